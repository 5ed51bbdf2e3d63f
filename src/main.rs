use std::process::ExitCode;

fn main() -> ExitCode {
    memofab::cli::main()
}
