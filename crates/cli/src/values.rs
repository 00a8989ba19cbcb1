//! The command line's value enums: clap's view of the libraries' choice types. The libraries
//! stay free of clap, so each choice is mirrored here with its `--help` text and converted into
//! the library type where a command builds its configuration.

use clap::ValueEnum;

/// Declares a clap value enum with the same variants as a library enum, and the conversion.
macro_rules! mirror {
    ($(#[$meta:meta])* $name:ident => $lib:ty { $($(#[$vmeta:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl From<$name> for $lib {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$variant => <$lib>::$variant),+
                }
            }
        }
    };
}

mirror! {
    /// How play counts become confidence.
    ConfidenceArg => encore::als::Confidence {
        /// c = 1 + α·log(1 + r/ε): dampens heavy repeat listening.
        Log,
        /// c = 1 + α·r (the original paper's choice).
        Linear,
    }
}

mirror! {
    /// Which solver runs each half-step.
    SolverArg => encore::als::SolverKind {
        /// Exact per-row Cholesky solve (CPU; the reference).
        Cholesky,
        /// Conjugate gradient warm-started from the current factors (CPU and GPU).
        Cg,
        /// GPU: per-row systems built into memory, solved by cuBLAS batched LU.
        Lu,
        /// GPU: one thread block per row builds and Cholesky-solves its system in shared memory.
        CholeskyFused,
    }
}

mirror! {
    /// Storage of the factor rows the solvers gather.
    PrecisionArg => encore::als::Precision {
        /// fp32 everywhere.
        Fp32,
        /// The gathered rows in bf16 (half the bytes); sums and the solved factors stay fp32.
        Bf16,
    }
}

mirror! {
    /// How the CPU `cg` solver treats rows with at most `--cg-steps` entries.
    ShortRowsArg => encore::als::ShortRows {
        /// Solved exactly by the Woodbury identity (cheaper than CG there).
        Exact,
        /// Conjugate gradient like the other rows (as the GPU cg solver does).
        Cg,
    }
}

mirror! {
    /// Which kind of input.
    FormatArg => encore::data::formats::Format {
        /// Decide from the file or directory names.
        Auto,
        /// LFM-1b listening events (LFM-1b_LEs.txt).
        Lfm1b,
        /// LFM-2b listening-counts (user_id, track_id, count).
        Lfm2b,
        /// HetRec 2011 Last.fm user_artists.dat (items are artists).
        Hetrec,
        /// MovieLens ratings.csv (ml-latest, 20M, 25M, 32M), ratings.dat (1M, 10M) or u.data (100K).
        Movielens,
        /// Million Song Dataset Taste Profile triplets (train_triplets.txt): string ids.
        Msd,
        /// ListenBrainz listens, JSON lines: a dump or export directory, or a .listens/.jsonl file.
        Listenbrainz,
        /// Any delimited user, item[, value] file; other layouts through --user-column etc.
        Triples,
    }
}

mirror! {
    /// Field delimiter of `triples` inputs.
    DelimiterArg => encore::data::formats::Delimiter {
        /// Tab if the first line has one, else `::`, else comma, else semicolon, else space.
        Auto,
        Tab,
        Comma,
        Semicolon,
        Space,
        /// `::` (MovieLens 1M and 10M).
        DoubleColon,
    }
}

mirror! {
    /// Whether the first line is a header.
    HeaderArg => encore::data::formats::HeaderMode {
        /// A first line that does not parse as data and contains a letter is a header.
        Auto,
        Yes,
        No,
    }
}

mirror! {
    /// How the thresholds are applied.
    FilterArg => encore::data::filter::FilterMode {
        /// Repeat until nothing changes (every kept user and track meets its threshold).
        FixedPoint,
        /// One pass of each rule.
        Once,
    }
}

mirror! {
    /// Preset sizes of synthetic data.
    ScaleArg => encore::synth::Scale {
        /// 1,000 users, 10,000 tracks, 500,000 events: the demo default, well under a second.
        Tiny,
        /// 10,000 users, 200,000 tracks, 20 M events.
        Small,
        /// 30,000 users, 1 M tracks, 150 M events.
        Medium,
        /// 120,322 users, 5.6 M tracks, 1,088,161,692 events (~47.8 GB of LEs text).
        Lfm1b,
    }
}

mirror! {
    /// Whether user and item ids are integers or strings.
    IdsArg => encore::data::formats::IdsMode {
        /// The format's kind (strings for msd and listenbrainz); for triples, strings when the
        /// first data line's user or item is not a non-negative integer.
        Auto,
        /// Non-negative integers (stored as int64).
        Int,
        /// Strings of any characters, up to 256 bytes (stored as numpy |S, ascending).
        String,
    }
}

mirror! {
    /// What the values become in the matrix.
    ValueArg => encore::data::records::ValueMode {
        /// Play counts: integers summed per (user, item); 1 per line for listening events.
        Count,
        /// Ratings: decimals such as 3.5, the highest kept when a pair is rated twice.
        Rating,
        /// 1 for every (user, item) pair kept (after --min-value).
        Binary,
    }
}

mirror! {
    /// How each rank of multi-GPU training gets the Gram matrix YᵀY of the fixed side.
    GramArg => encore::als::gpu::GramMode {
        /// Every rank computes it from its full copy of the factors: no communication, and
        /// the single-GPU factors bit for bit.
        Replicated,
        /// Every rank computes the part of its own rows; the parts are summed across ranks
        /// (1/N of the work, factors equal to one GPU's to rounding).
        Reduced,
    }
}

// `mirror!` declares the enum, so `#[default]` cannot be put on a variant.
#[allow(clippy::derivable_impls)]
impl Default for GramArg {
    fn default() -> Self {
        Self::Replicated
    }
}
