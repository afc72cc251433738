//! `migrate --rollback`'s file parsing: arbitrary text as a rollback file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    serverconfig_webhook_fuzz::check_rollback(data);
});
