//! The sync loop's pure plan (`core::plan`): placeholders and the
//! per-workload action, on inputs the fuzz bytes choose.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    serverconfig_webhook_fuzz::check_plan(data);
});
