// Throwaway timing harness (not committed).
use encore::synth::{Scale, SynthConfig, generate};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scale = match args[1].as_str() {
        "tiny" => Scale::Tiny,
        "small" => Scale::Small,
        "medium" => Scale::Medium,
        _ => Scale::Lfm1b,
    };
    let mut cfg = SynthConfig::from_scale(scale, 42);
    if let Some(u) = args.get(3) {
        cfg.users = u.parse().unwrap();
    }
    if let Some(e) = args.get(4) {
        cfg.events = e.parse().unwrap();
    }
    let r = generate(&cfg, std::path::Path::new(&args[2]), true, false).unwrap();
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    println!(
        "{:.1} Mev/s {:.1} MB/s ratio {:.2}",
        r.events_per_second() / 1e6,
        r.mb_per_second(),
        r.events as f64 / r.distinct_pairs as f64
    );
}
