//! Companion test app for the ktimer driver.
fn main() {}
