//! `encore._encore`: the compiled half of the Python package `encore` (python/python/encore),
//! a thin layer over the core crate. The Python half owns the user-facing API (argument
//! handling, scipy conversions, docstrings); this half reads numpy arrays in place, releases
//! the GIL around every long call and maps Encore's errors to Python exceptions.
//!
//! - [`errors`]: error → exception mapping, `GpuError`, the panic guard.
//! - [`csr`]: scipy CSR matrices read without copies, with dtype, contiguity and canonical checks.
//! - [`fit`]: training (Ctrl-C and callbacks while the GIL is released), device choice.
//! - [`model`]: a trained model (its caches, device, threads; save and load), with
//!   [`score`] (recommend, similar), [`foldin`] (fold-in, partial fits) and [`eval`] behind it.
//! - [`data`], [`ids`]: `prep` and `load_dataset`.
//! - [`eval`]: evaluation, of a model or of another library's factors, with the same code.
//! - [`bench`]: the CLI's batch recommend in process, to measure this layer's overhead.

use pyo3::prelude::*;

mod bench;
mod csr;
mod data;
mod errors;
mod eval;
mod fit;
mod foldin;
mod ids;
mod model;
mod score;
mod threads;

#[pymodule]
fn _encore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", encore::VERSION)?;
    m.add("GpuError", m.py().get_type::<errors::GpuError>())?;
    m.add("IN_MEMORY", fit::IN_MEMORY)?;
    m.add_class::<model::Model>()?;
    m.add_class::<model::FactorOwner>()?;
    m.add_class::<bench::LibraryRecommender>()?;
    m.add_function(wrap_pyfunction!(fit::fit, m)?)?;
    m.add_function(wrap_pyfunction!(fit::default_config, m)?)?;
    m.add_function(wrap_pyfunction!(fit::resolve_device, m)?)?;
    m.add_function(wrap_pyfunction!(fit::driver_present, m)?)?;
    m.add_function(wrap_pyfunction!(fit::describe_gpu, m)?)?;
    m.add_function(wrap_pyfunction!(fit::_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(data::prep, m)?)?;
    m.add_function(wrap_pyfunction!(data::default_prep_options, m)?)?;
    m.add_function(wrap_pyfunction!(data::load_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(eval::evaluate_factors, m)?)?;
    Ok(())
}
