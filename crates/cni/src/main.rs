//! calico: the Calico CNI network plugin (see the library documentation).

fn main() {
    std::process::exit(calico_cni::run());
}
