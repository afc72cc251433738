//! Prints the handler's answer to each file given: `cargo run --example
//! replay -- artifacts/review/crash-...` (to look at a fuzzer finding).
fn main() {
    let (admission, rt) = serverconfig_webhook_fuzz::admission();
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("readable file");
        let answer = rt.block_on(admission.review(&data));
        println!(
            "{path}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
}
