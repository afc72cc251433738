//! `render`'s file parsing: arbitrary bytes as a YAML or JSON file, used as
//! the workload, the Server and the ServerConfig in turn.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    serverconfig_webhook_fuzz::check_render(data);
});
