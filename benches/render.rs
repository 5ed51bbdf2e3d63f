//! The cockpit's frame time; the same figures as `memofab bench render`.
//! Run with `cargo bench --bench render`.

use memofab::bench::{Scale, render};

fn main() {
    match render::run(Scale::FULL) {
        Ok(table) => print!("{}", table.render()),
        Err(e) => {
            eprintln!("render benchmark failed: {e:#}");
            std::process::exit(1);
        }
    }
}
