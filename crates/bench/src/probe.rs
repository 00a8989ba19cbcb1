//! Whether the host has a usable GPU, for the benchmarks whose default runs include one.

use encore::gpu::DeviceChoice;

/// Whether this host has a usable GPU, asked once (opening a device costs a context) and only
/// when a GPU run or backend is asked for.
#[derive(Default)]
pub(crate) struct GpuProbe {
    answer: Option<Option<String>>,
}

impl GpuProbe {
    /// `None` when a GPU is usable, else why not: default runs and backends include the GPU, and
    /// on a CPU-only host they are skipped with this note rather than failing the benchmark
    /// (issue 13). A named GPU that does not open on a host that has a usable one still fails.
    pub(crate) fn unusable(&mut self) -> Option<String> {
        self.answer
            .get_or_insert_with(|| match encore::gpu::resolve(DeviceChoice::Auto) {
                Ok((Some(_), _)) => None,
                Ok((None, note)) => Some(note.map_or_else(
                    || "no usable GPU".into(),
                    |n| n.trim_end_matches("; using the CPU").to_owned(),
                )),
                Err(e) => Some(format!("no usable GPU: {e}")),
            })
            .clone()
    }
}
