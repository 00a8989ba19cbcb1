//! `demo`: the whole pipeline on built-in synthetic data, no arguments needed.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::values::ScaleArg;
use encore::als::AlsConfig;
use encore::data::prep::{PrepConfig, prep};
use encore::infer::Ranked;

use crate::data::{SynthArgs, cmd_synth, print_manifest};
use encore::gpu::DeviceChoice;
use encore::train::FitOptions;

use crate::model::{EvalArgs, cmd_eval, load_recommender, train_to_dir};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Working directory for the demo's files (replaced on each run).
    #[arg(long, default_value = "encore-demo")]
    pub dir: PathBuf,
    /// Size of the synthetic data.
    #[arg(long, value_enum, default_value = "tiny")]
    pub scale: ScaleArg,
}

pub fn cmd_demo(a: &DemoArgs, quiet: bool) -> Result<()> {
    let raw = a.dir.join("raw");
    let data = a.dir.join("dataset");
    let model_dir = a.dir.join("model");
    println!(
        "== 1/5 synth: {} synthetic LFM-1b logs",
        clap::ValueEnum::to_possible_value(&a.scale)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    );
    cmd_synth(
        &SynthArgs {
            out: raw.clone(),
            scale: a.scale,
            users: None,
            tracks: None,
            events: None,
            seed: 42,
            force: true,
        },
        quiet,
    )?;
    println!("\n== 2/5 prep: aggregate, filter, re-index, split");
    let mut cfg = PrepConfig::new(&raw, &data);
    cfg.force = true;
    cfg.quiet = quiet;
    let m = prep(&cfg).with_context(|| format!("preparing {}", raw.display()))?;
    print_manifest(&m, &data);

    println!("\n== 3/5 train: implicit ALS (on the GPU when one is usable, else the CPU)");
    let cfg = AlsConfig {
        compute_loss: true,
        ..AlsConfig::default()
    };
    let opts = FitOptions {
        quiet: true,
        ..FitOptions::default()
    };
    train_to_dir(&data, &model_dir, &cfg, &opts, true)?;

    println!("\n== 4/5 eval: held-out listens vs the popularity baseline");
    cmd_eval(&EvalArgs {
        dataset: data.clone(),
        model: model_dir.clone(),
        k: 10,
        device: DeviceChoice::Auto,
        json: false,
    })?;

    println!("\n== 5/5 recommend: three listeners");
    let rec = load_recommender(&model_dir, Some(&data), DeviceChoice::Auto)?;
    let n = rec.dataset.user_ids.len();
    for row in [0, n / 2, n.saturating_sub(1)] {
        let user = rec.dataset.user_ids.get(row);
        let (history, plays) = rec.dataset.train.row(row);
        let mut top: Vec<(f32, u32)> = plays.iter().copied().zip(history.iter().copied()).collect();
        top.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let liked: Vec<String> = top
            .iter()
            .take(3)
            .map(|&(p, i)| {
                let t = &rec.describe(&Ranked {
                    items: vec![i],
                    scores: vec![p],
                })[0];
                format!(
                    "{} by {} ({p} plays)",
                    t.name.as_deref().unwrap_or("?"),
                    t.artist.as_deref().unwrap_or("?")
                )
            })
            .collect();
        println!(
            "\nuser {user}: {} tracks in training; most played: {}",
            history.len(),
            liked.join("; ")
        );
        let ranked = rec.recommend_rows(&[row], 5, true)?;
        let tracks = rec.describe(&ranked[0]);
        for (r, t) in tracks.iter().enumerate() {
            println!(
                "  {}. {} — {} (score {:.3})",
                r + 1,
                t.name.as_deref().unwrap_or("?"),
                t.artist.as_deref().unwrap_or("?"),
                t.score
            );
        }
    }
    println!(
        "\nFiles: {} (dataset: scipy.sparse.load_npz reads train.npz), {} (numpy.load reads the factors).",
        data.display(),
        model_dir.display()
    );
    Ok(())
}
