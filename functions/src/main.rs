//! The image's binary: every example function, run by `jetfn::main()`.

mod audit;
mod inventory;
mod notifications;
mod payments;
mod stock;

fn main() -> std::process::ExitCode {
    jetfn::main()
}
