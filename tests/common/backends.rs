//! One test body, every backend: [`on_every_backend!`] turns each test into a module with a
//! `cpu` test, which always runs, and a `gpu` test, ignored unless run with `--ignored` on a
//! GPU host (`scripts/gpu-test.sh`). A behaviour pinned on the CPU is thereby pinned on the GPU
//! too, against the same oracle (the pattern of implicit's `recommender_base_test.py` and
//! dfdx's `TestDevice`).

use encore::als::gpu::{GpuBackend, GpuOptions};
use encore::als::{AlsConfig, Backend, CpuBackend, Factors, SolverKind};
use encore::gpu::Gpu;
use encore::infer::{CpuScorer, GpuScorer, GpuScorerOptions, Scorer};

/// Where a behavioural test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    /// The device's exact solver: Cholesky on the CPU, the fused Cholesky on the GPU.
    pub fn exact_solver(self) -> SolverKind {
        match self {
            Device::Cpu => SolverKind::Cholesky,
            Device::Gpu => SolverKind::CholeskyFused,
        }
    }

    /// A training backend for `cfg` on this device.
    pub fn backend(self, cfg: &AlsConfig) -> Box<dyn Backend> {
        match self {
            Device::Cpu => Box::new(CpuBackend::new(cfg).unwrap()),
            Device::Gpu => {
                let gpu = Gpu::open(0).expect("GPU tests run with --ignored on a CUDA host");
                Box::new(GpuBackend::new(gpu, cfg, GpuOptions::default()).unwrap())
            }
        }
    }

    /// The default scorer over `items` (norm pruning on).
    pub fn scorer(self, items: &Factors) -> Box<dyn Scorer> {
        self.scorer_with(items, None, true)
    }

    /// A scorer with an explicit item tile (`None`: the backend's default) and pruning choice.
    pub fn scorer_with(self, items: &Factors, tile: Option<usize>, prune: bool) -> Box<dyn Scorer> {
        match self {
            Device::Cpu => Box::new(match (prune, tile) {
                (false, _) => CpuScorer::unpruned(items).unwrap(),
                (true, Some(t)) => CpuScorer::with_tile(items, t).unwrap(),
                (true, None) => CpuScorer::new(items).unwrap(),
            }),
            Device::Gpu => {
                let gpu = Gpu::open(0).expect("GPU tests run with --ignored on a CUDA host");
                let options = GpuScorerOptions {
                    tile,
                    prune,
                    ..GpuScorerOptions::default()
                };
                Box::new(GpuScorer::new(gpu, items, options).unwrap())
            }
        }
    }
}

/// Declares each `fn name(device: Device) { ... }` as a module `name` with two tests: `cpu`
/// (always) and `gpu` (ignored without `--ignored`).
#[macro_export]
macro_rules! on_every_backend {
    ($($(#[$meta:meta])* fn $name:ident($dev:ident: Device) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn body($dev: $crate::common::backends::Device) $body

            #[test]
            fn cpu() {
                body($crate::common::backends::Device::Cpu)
            }

            #[test]
            #[ignore = "needs a CUDA GPU"]
            fn gpu() {
                body($crate::common::backends::Device::Gpu)
            }
        }
    )*};
}
