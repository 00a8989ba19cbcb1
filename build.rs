//! Compiles every `cuda/*.cu` to PTX for embedding (`include_str!` in `src/gpu/als.rs` and `src/gpu/topk.rs`).
//!
//! With an nvcc (from `NVCC`, `CUDA_HOME`/`CUDA_PATH`, or `PATH`) each kernel file is compiled
//! with the flags below; without one, the committed `ptx/*.ptx` are used, so machines without the
//! CUDA toolkit (CI, most laptops) still build a binary that runs on GPU hosts. The committed PTX
//! comes from a pinned nvcc (`scripts/gen-ptx.sh`, checked by CI) because a newer nvcc emits a PTX
//! ISA that older drivers refuse. `ENCORE_USE_COMMITTED_PTX=1` skips nvcc even when one is found.
//! Output goes to `OUT_DIR` only; nvcc's messages are shown when it fails.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags shared with `scripts/gen-ptx.sh` (keep the two in sync): PTX for compute capability 8.0,
/// which the driver JIT-compiles for Ampere, Hopper and later.
const NVCC_FLAGS: &[&str] = &["-ptx", "-arch=compute_80", "-O3"];

fn main() {
    println!("cargo:rerun-if-changed=cuda");
    println!("cargo:rerun-if-changed=ptx");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "ENCORE_USE_COMMITTED_PTX",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_else(|_| fail("OUT_DIR is not set")));
    let mut sources: Vec<PathBuf> = fs::read_dir("cuda")
        .unwrap_or_else(|e| fail(&format!("cannot list cuda/: {e}")))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    for path in &sources {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let nvcc = if env::var_os("ENCORE_USE_COMMITTED_PTX").is_some() {
        None
    } else {
        find_nvcc()
    };
    for src in &sources {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_else(|| fail(&format!("bad kernel file name {}", src.display())));
        let dst = out.join(format!("{stem}.ptx"));
        match &nvcc {
            Some(nvcc) => compile(nvcc, src, &dst),
            None => {
                let committed = Path::new("ptx").join(format!("{stem}.ptx"));
                fs::copy(&committed, &dst).unwrap_or_else(|e| {
                    fail(&format!(
                        "no nvcc found and {} is missing ({e}); run scripts/gen-ptx.sh",
                        committed.display()
                    ))
                });
            }
        }
    }
}

fn compile(nvcc: &Path, src: &Path, dst: &Path) {
    let output = Command::new(nvcc)
        .args(NVCC_FLAGS)
        .arg("-o")
        .arg(dst)
        .arg(src)
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {}: {e}", nvcc.display())));
    if !output.status.success() {
        fail(&format!(
            "{} failed on {}:\n{}{}",
            nvcc.display(),
            src.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    println!(
        "cargo:warning=compiled {} with {} (not the committed PTX)",
        src.display(),
        nvcc.display()
    );
}

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("NVCC") {
        return Some(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = env::var_os(var) {
            let p = Path::new(&home).join("bin").join("nvcc");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|d| d.join("nvcc"))
            .find(|p| p.is_file())
    })
}

fn fail(msg: &str) -> ! {
    eprintln!("build.rs: {msg}");
    std::process::exit(1);
}
