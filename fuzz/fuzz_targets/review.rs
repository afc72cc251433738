//! Review decoding + mutation: arbitrary bytes as a `/mutate` body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    serverconfig_webhook_fuzz::check_review(data);
});
