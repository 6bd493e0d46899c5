//! Allocations per second through the library on the embedded store (one process).

fn main() {
    divan::main();
}
