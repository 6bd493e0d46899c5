//! `calicoctl`.

fn main() {
    std::process::exit(calicoctl::run(std::env::args_os()));
}
