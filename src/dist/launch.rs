//! Who this process is in a multi-rank run: from `--rank/--world/--rendezvous`, or from SLURM.
//!
//! Under `srun` every task gets `SLURM_PROCID` (its rank), `SLURM_STEP_NUM_TASKS` (the world;
//! only a job step has it, so a batch script's single `encore train` is not mistaken for a rank),
//! `SLURM_LOCALID` (its index on its host, which picks its GPU) and `SLURM_JOB_NODELIST` (the
//! job's hosts, compressed: `gpu[01-04,07]`); rank 0 runs on the first host of the list, so that
//! host is the rendezvous. The port defaults to one derived from `SLURM_JOB_ID`, so two jobs
//! sharing a host do not collide.

use crate::error::{Error, Result};

/// This process's place in the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldSpec {
    /// `0..world`; rank 0 hosts the rendezvous and writes the model.
    pub rank: usize,
    pub world: usize,
    /// `HOST:PORT` of rank 0.
    pub rendezvous: String,
    /// Index among the ranks on this host (the GPU it uses).
    pub local_rank: usize,
}

/// The largest world accepted (a typo such as `--world 80000` should not open 80 000 sockets).
pub const MAX_WORLD: usize = 4096;

impl WorldSpec {
    /// Checks the sizes (rank inside the world, world within [`MAX_WORLD`], an address).
    pub fn validate(&self) -> Result<()> {
        if self.world == 0 || self.world > MAX_WORLD {
            return Err(Error::Config(format!(
                "--world must be 1..={MAX_WORLD}, got {}",
                self.world
            )));
        }
        if self.rank >= self.world {
            return Err(Error::Config(format!(
                "--rank {} is outside a world of {} (ranks are 0..{})",
                self.rank, self.world, self.world
            )));
        }
        if !self.rendezvous.contains(':') {
            return Err(Error::Config(format!(
                "--rendezvous must be HOST:PORT, got {:?}",
                self.rendezvous
            )));
        }
        Ok(())
    }

    /// From the three flags: all of them or none (`Ok(None)`: not a multi-rank run).
    pub fn from_flags(
        rank: Option<usize>,
        world: Option<usize>,
        rendezvous: Option<&str>,
        local_rank: Option<usize>,
    ) -> Result<Option<Self>> {
        match (rank, world, rendezvous) {
            (None, None, None) => Ok(None),
            (Some(rank), Some(world), Some(r)) => {
                let s = Self {
                    rank,
                    world,
                    rendezvous: r.to_string(),
                    local_rank: local_rank.unwrap_or(0),
                };
                s.validate()?;
                Ok(Some(s))
            }
            _ => Err(Error::Config(
                "--rank, --world and --rendezvous go together: give all three (or run under \
                 SLURM's srun, which sets them)"
                    .into(),
            )),
        }
    }

    /// From SLURM's variables, read through `var` (`std::env::var` in the binary);
    /// `Ok(None)` outside a SLURM job step with several tasks. `port` overrides the port
    /// derived from the job id.
    pub fn from_slurm(
        var: &dyn Fn(&str) -> Option<String>,
        port: Option<u16>,
    ) -> Result<Option<Self>> {
        let Some(world) = var("SLURM_STEP_NUM_TASKS") else {
            return Ok(None);
        };
        let num = |name: &str, v: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| Error::Config(format!("{name}={v:?} is not a number (set by SLURM?)")))
        };
        let world = num("SLURM_STEP_NUM_TASKS", &world)?;
        if world <= 1 {
            return Ok(None);
        }
        let get = |name: &str| {
            var(name).ok_or_else(|| {
                Error::Config(format!(
                    "SLURM_STEP_NUM_TASKS is {world} but {name} is not set; start the ranks \
                     with srun"
                ))
            })
        };
        let rank = num("SLURM_PROCID", &get("SLURM_PROCID")?)?;
        let local_rank = match var("SLURM_LOCALID") {
            Some(v) => num("SLURM_LOCALID", &v)?,
            None => 0,
        };
        // The step's first host runs its task 0.
        let nodes = get("SLURM_STEP_NODELIST").or_else(|_| get("SLURM_JOB_NODELIST"))?;
        let host = first_host(&nodes)?;
        let port = match port {
            Some(p) => p,
            None => default_port(var("SLURM_JOB_ID").as_deref()),
        };
        let s = Self {
            rank,
            world,
            rendezvous: format!("{host}:{port}"),
            local_rank,
        };
        s.validate()?;
        Ok(Some(s))
    }
}

/// 29500 outside a job; inside, 20000 + (job id mod 20000), so concurrent jobs on one host
/// rarely collide (`--rendezvous-port` overrides it).
pub fn default_port(job_id: Option<&str>) -> u16 {
    match job_id.and_then(|j| j.trim().parse::<u64>().ok()) {
        Some(j) => 20_000 + (j % 20_000) as u16,
        None => 29_500,
    }
}

/// The first host of a SLURM host list: `gpu[01-04,07],cpu3` → `gpu01`, `n[1-2]-ib` → `n1-ib`,
/// `a,b` → `a`.
pub fn first_host(list: &str) -> Result<String> {
    let bad = || Error::Config(format!("SLURM_JOB_NODELIST {list:?} is not a host list"));
    let mut out = String::new();
    let mut chars = list.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            ',' => break,
            '[' => {
                // The first element of the bracket: up to '-', ',' or ']'.
                let mut first = String::new();
                let mut closed = false;
                let mut taking = true;
                for d in chars.by_ref() {
                    match d {
                        ']' => {
                            closed = true;
                            break;
                        }
                        '-' | ',' => taking = false,
                        d if taking => first.push(d),
                        _ => {}
                    }
                }
                if !closed || first.is_empty() {
                    return Err(bad());
                }
                out.push_str(&first);
            }
            ']' => return Err(bad()),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn first_hosts_of_slurm_lists() {
        for (list, host) in [
            ("node7", "node7"),
            ("gpu[01-04,07]", "gpu01"),
            ("gpu[01-04,07],cpu3", "gpu01"),
            ("a,b,c", "a"),
            ("n[1-2]-ib", "n1-ib"),
            ("rack[3-4]-n[08-09]", "rack3-n08"),
            ("x[5]", "x5"),
        ] {
            assert_eq!(first_host(list).unwrap(), host, "{list}");
        }
        for bad in ["", "gpu[01-04", "gpu]", "[]", ","] {
            assert!(first_host(bad).is_err(), "{bad:?}");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn slurm_variables_give_the_world() {
        let e = env(&[
            ("SLURM_STEP_NUM_TASKS", "8"),
            ("SLURM_PROCID", "5"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_STEP_NODELIST", "gpu[12-15]"),
            ("SLURM_JOB_NODELIST", "gpu[10-15]"),
            ("SLURM_JOB_ID", "123456"),
        ]);
        let s = WorldSpec::from_slurm(&e, None).unwrap().unwrap();
        assert_eq!(
            s,
            WorldSpec {
                rank: 5,
                world: 8,
                rendezvous: "gpu12:23456".into(),
                local_rank: 1
            }
        );
        assert_eq!(
            WorldSpec::from_slurm(&e, Some(4000))
                .unwrap()
                .unwrap()
                .rendezvous,
            "gpu12:4000"
        );
        // One task, or no SLURM at all: not a multi-rank run.
        assert_eq!(
            WorldSpec::from_slurm(&env(&[("SLURM_STEP_NUM_TASKS", "1")]), None).unwrap(),
            None
        );
        assert_eq!(WorldSpec::from_slurm(&env(&[]), None).unwrap(), None);
        let e = env(&[("SLURM_STEP_NUM_TASKS", "2"), ("SLURM_JOB_NODELIST", "a")]);
        let err = WorldSpec::from_slurm(&e, None).unwrap_err().to_string();
        assert!(err.contains("SLURM_PROCID is not set"), "{err}");
        let e = env(&[("SLURM_STEP_NUM_TASKS", "two")]);
        let err = WorldSpec::from_slurm(&e, None).unwrap_err().to_string();
        assert!(err.contains("SLURM_STEP_NUM_TASKS"), "{err}");
        // A batch script (SLURM_NTASKS but no job step) is one process.
        let e = env(&[("SLURM_NTASKS", "4")]);
        assert_eq!(WorldSpec::from_slurm(&e, None).unwrap(), None);
    }

    #[test]
    fn flags_go_together_and_are_checked() {
        assert_eq!(WorldSpec::from_flags(None, None, None, None).unwrap(), None);
        let e = WorldSpec::from_flags(Some(1), None, None, None).unwrap_err();
        assert!(e.to_string().contains("go together"), "{e}");
        let e = WorldSpec::from_flags(Some(4), Some(4), Some("h:1"), None).unwrap_err();
        assert!(e.to_string().contains("outside a world of 4"), "{e}");
        let e = WorldSpec::from_flags(Some(0), Some(2), Some("host"), None).unwrap_err();
        assert!(e.to_string().contains("HOST:PORT"), "{e}");
        let e = WorldSpec::from_flags(Some(0), Some(0), Some("h:1"), None).unwrap_err();
        assert!(e.to_string().contains("--world must be"), "{e}");
        assert!(
            WorldSpec::from_flags(Some(1), Some(2), Some("h:1"), Some(1))
                .unwrap()
                .is_some()
        );
    }
}
