//! Embeds the demo's seed project (assets/demo/seed) into the binary, so
//! `memofab demo` works from an installed binary on any machine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let seed = manifest.join("assets").join("demo").join("seed");
    println!("cargo:rerun-if-changed={}", seed.display());
    let mut files = Vec::new();
    collect(&seed, &seed, &mut files);
    files.sort();
    let mut out = String::from(
        "/// The demo seed project: (relative path, contents).\npub static DEMO_SEED: &[(&str, &[u8])] = &[\n",
    );
    for (rel, abs) in files {
        let _ = writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("demo_seed.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
        std::process::exit(1);
    }
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            files.push((rel, path));
        }
    }
}
