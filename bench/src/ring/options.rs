//! Command-line options of `bench ring` and their validation into a run
//! plan.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use virtio::barrier::{BarrierMode, BarrierSite};

use super::config::{BarrierConfig, DeviceKind, RingConfig, SiteSetting, TrialShape};
use super::trial::CorePair;
use super::RingError;
use crate::host;

/// A barrier configuration family for `--modes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeChoice {
    /// Every site weak.
    Weak,
    /// Every site strong.
    Strong,
    /// Per-site attribution: weak, strong, and one configuration per site
    /// with only that site strong.
    Sites,
    /// The `--sites` settings.
    Custom,
}

/// `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Options of `bench ring`.
#[derive(Args, Clone, Debug)]
pub struct RingArgs {
    /// Barrier configurations, comma-separated: weak (every site weak),
    /// strong (every site strong), sites (weak, strong and one configuration
    /// per site with only that site strong), custom (the --sites settings)
    /// [default: weak,strong, plus custom when --sites is given]
    #[arg(long, value_enum, value_delimiter = ',')]
    pub modes: Option<Vec<ModeChoice>>,

    /// Settings of the custom configuration: NAME=weak|strong|none,... where
    /// NAME is avail-publish, notify-check, used-read, interrupt-enable or
    /// used-event-store. Unlisted sites are weak. `none` removes the barrier
    /// and needs --unsafe-ablation
    #[arg(long, value_name = "NAME=SETTING,...")]
    pub sites: Option<String>,

    /// Same as adding `sites` to --modes
    #[arg(long)]
    pub attribute: bool,

    /// Accept `none` in --sites: run without those barriers, count lost
    /// notifications, missing or duplicated buffers and wrong lengths, and
    /// carry on. Needs a binary built with `--features ablation`
    #[arg(long)]
    pub unsafe_ablation: bool,

    /// Descriptors in the queue, a power of two from 2 to 32768
    #[arg(long, default_value_t = 256)]
    pub queue_size: u16,

    /// Chains per round trip. Each chain takes two descriptors (request and
    /// response)
    #[arg(long, default_value_t = 1)]
    pub batch: u16,

    /// Timed round trips per trial
    #[arg(long, default_value_t = 1_000_000)]
    pub iterations: u64,

    /// Untimed round trips before each trial's timed ones [default: a tenth
    /// of --iterations, at most 100000]
    #[arg(long)]
    pub warmup: Option<u64>,

    /// Event idx settings to run, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', default_value = "on,off")]
    pub event_idx: Vec<Switch>,

    /// Device implementations, comma-separated: model (this crate's device
    /// model), rust-vmm (virtio-queue over vm-memory)
    #[arg(long, value_enum, value_delimiter = ',', default_value = "model,rust-vmm")]
    pub devices: Vec<DeviceKind>,

    /// Rounds. Each round runs every configuration once, in a shuffled order
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,

    /// Seed of the round order and of the bootstrap [default: from the
    /// clock, printed and recorded in the report]
    #[arg(long)]
    pub seed: Option<u64>,

    /// Cores of the driver and device threads, as DRIVER,DEVICE [default:
    /// the first two cores the process may use]
    #[arg(long, value_delimiter = ',', value_name = "DRIVER,DEVICE")]
    pub cores: Option<Vec<usize>>,

    /// Milliseconds without a used buffer notification after which the
    /// driver diagnoses a stall
    #[arg(long, default_value_t = 1000)]
    pub stall_timeout_ms: u64,

    /// Output directory [default: bench-out/ring-<UTC timestamp>]
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A validated run: every configuration, the shared trial shape, and where
/// the output goes.
#[derive(Clone, Debug)]
pub struct RingPlan {
    /// Configurations in a fixed order, which each round shuffles.
    pub configs: Vec<RingConfig>,
    /// Trial shape. `tolerate_faults` is set per trial.
    pub shape: TrialShape,
    /// Rounds.
    pub rounds: u32,
    /// Seed of the round order and of the bootstrap.
    pub seed: u64,
    /// Driver and device cores.
    pub cores: CorePair,
    /// Output directory.
    pub out: PathBuf,
}

impl RingPlan {
    /// Validates `args`.
    ///
    /// # Errors
    /// [`RingError::InvalidOption`] naming the option, its value and the
    /// rule; [`RingError::AblationUnavailable`] for `--unsafe-ablation`
    /// without the `ablation` feature; [`RingError::NotEnoughCores`].
    pub fn from_args(args: &RingArgs) -> Result<Self, RingError> {
        let shape = trial_shape(args)?;
        let barriers = barrier_configs(args)?;
        let mut devices = args.devices.clone();
        devices.dedup();
        let mut event_idx: Vec<bool> = args.event_idx.iter().map(|&switch| switch == Switch::On).collect();
        event_idx.dedup();
        if devices.is_empty() || event_idx.is_empty() {
            return Err(invalid("--devices/--event-idx", "", "give at least one value"));
        }
        let mut configs = Vec::new();
        for &device in &devices {
            for &event_idx in &event_idx {
                for barriers in &barriers {
                    configs.push(RingConfig {
                        device,
                        event_idx,
                        barriers: barriers.clone(),
                    });
                }
            }
        }
        if args.rounds == 0 {
            return Err(invalid("--rounds", "0", "run at least one round"));
        }
        Ok(RingPlan {
            configs,
            shape,
            rounds: args.rounds,
            seed: args.seed.unwrap_or_else(clock_seed),
            cores: core_pair(args.cores.as_deref())?,
            out: args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("bench-out/ring-{}", utc_timestamp(SystemTime::now())))),
        })
    }
}

fn invalid(option: &'static str, value: impl Into<String>, reason: impl Into<String>) -> RingError {
    RingError::InvalidOption {
        option,
        value: value.into(),
        reason: reason.into(),
    }
}

fn trial_shape(args: &RingArgs) -> Result<TrialShape, RingError> {
    let size = args.queue_size;
    if size < 2 || !size.is_power_of_two() || size > virtio::ring::MAX_QUEUE_SIZE {
        return Err(invalid("--queue-size", size.to_string(), "use a power of two from 2 to 32768"));
    }
    if args.batch == 0 || u32::from(args.batch) * 2 > u32::from(size) {
        return Err(invalid(
            "--batch",
            args.batch.to_string(),
            format!("use 1 to {} (each chain takes 2 of the {size} descriptors)", size / 2),
        ));
    }
    if args.iterations == 0 {
        return Err(invalid("--iterations", "0", "time at least one round trip"));
    }
    if args.stall_timeout_ms == 0 {
        return Err(invalid("--stall-timeout-ms", "0", "use at least 1 ms"));
    }
    Ok(TrialShape {
        queue_size: size,
        batch: args.batch,
        iterations: args.iterations,
        warmup: args.warmup.unwrap_or((args.iterations / 10).min(100_000)),
        stall_timeout: Duration::from_millis(args.stall_timeout_ms),
        tolerate_faults: false,
    })
}

fn barrier_configs(args: &RingArgs) -> Result<Vec<BarrierConfig>, RingError> {
    let custom = args.sites.as_deref().map(parse_sites).transpose()?;
    if args.unsafe_ablation && !cfg!(feature = "ablation") {
        return Err(RingError::AblationUnavailable);
    }
    if let Some(settings) = &custom {
        let ablated = settings.iter().any(|&(_, setting)| setting == SiteSetting::Ablated);
        if ablated && !args.unsafe_ablation {
            return Err(invalid(
                "--sites",
                args.sites.clone().unwrap_or_default(),
                "`none` removes a barrier the protocol needs; add --unsafe-ablation to run it anyway",
            ));
        }
    }

    let mut modes = args.modes.clone().unwrap_or_else(|| {
        let mut modes = vec![ModeChoice::Weak, ModeChoice::Strong];
        if custom.is_some() {
            modes.push(ModeChoice::Custom);
        }
        modes
    });
    if args.attribute {
        modes.push(ModeChoice::Sites);
    }

    let mut configs: Vec<BarrierConfig> = Vec::new();
    let mut add = |config: BarrierConfig| {
        if !configs.contains(&config) {
            configs.push(config);
        }
    };
    for mode in &modes {
        match mode {
            ModeChoice::Weak => add(BarrierConfig::uniform(BarrierMode::Weak)),
            ModeChoice::Strong => add(BarrierConfig::uniform(BarrierMode::Strong)),
            ModeChoice::Sites => {
                add(BarrierConfig::uniform(BarrierMode::Weak));
                add(BarrierConfig::uniform(BarrierMode::Strong));
                for site in BarrierSite::ALL {
                    add(BarrierConfig::only_strong(site));
                }
            }
            ModeChoice::Custom => {
                let settings = custom.as_ref().ok_or_else(|| {
                    invalid("--modes", "custom", "the custom configuration needs --sites")
                })?;
                add(BarrierConfig::custom(settings));
            }
        }
    }
    if custom.is_some() && !modes.contains(&ModeChoice::Custom) {
        return Err(invalid(
            "--sites",
            args.sites.clone().unwrap_or_default(),
            "only the custom configuration uses --sites; add custom to --modes",
        ));
    }
    Ok(configs)
}

/// Parses `NAME=SETTING,...`.
///
/// # Errors
/// [`RingError::InvalidOption`] for an unknown site or setting, a missing
/// `=`, or a site listed twice.
pub fn parse_sites(spec: &str) -> Result<Vec<(BarrierSite, SiteSetting)>, RingError> {
    let site_names: Vec<&str> = BarrierSite::ALL.iter().map(|site| site.name()).collect();
    let mut settings: Vec<(BarrierSite, SiteSetting)> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| invalid("--sites", item, "write each entry as NAME=weak|strong|none"))?;
        let site = BarrierSite::from_name(name.trim()).ok_or_else(|| {
            invalid("--sites", name, format!("unknown site; use one of {}", site_names.join(", ")))
        })?;
        let setting = SiteSetting::from_name(value.trim())
            .ok_or_else(|| invalid("--sites", value, "unknown setting; use weak, strong or none"))?;
        if settings.iter().any(|&(listed, _)| listed == site) {
            return Err(invalid("--sites", name, "site listed twice"));
        }
        settings.push((site, setting));
    }
    if settings.is_empty() {
        return Err(invalid("--sites", spec, "list at least one NAME=SETTING"));
    }
    Ok(settings)
}

fn core_pair(requested: Option<&[usize]>) -> Result<CorePair, RingError> {
    let allowed = host::allowed_cores();
    let pair = match requested {
        Some(&[driver, device]) => CorePair { driver, device },
        Some(other) => {
            let value = format!("{other:?}");
            return Err(invalid("--cores", value, "give exactly two cores, DRIVER,DEVICE"));
        }
        None => match allowed.as_slice() {
            [driver, device, ..] => CorePair {
                driver: *driver,
                device: *device,
            },
            _ => return Err(RingError::NotEnoughCores { allowed }),
        },
    };
    if pair.driver == pair.device {
        return Err(invalid("--cores", pair.driver.to_string(), "driver and device need different cores"));
    }
    for core in [pair.driver, pair.device] {
        if !allowed.contains(&core) {
            let reason = format!("this process may only use cores {allowed:?}");
            return Err(invalid("--cores", core.to_string(), reason));
        }
    }
    Ok(pair)
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0)
}

/// Formats `time` as `YYYYMMDD-HHMMSS` in UTC.
pub fn utc_timestamp(time: SystemTime) -> String {
    let seconds = time.duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or(0);
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let second_of_day = seconds % 86_400;
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month,
/// day), counting in 400-year eras of 146097 days that start on March 1 so
/// that the leap day ends a year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        ring: RingArgs,
    }

    fn parse(arguments: &[&str]) -> RingArgs {
        let mut all = vec!["ring"];
        all.extend_from_slice(arguments);
        Command::try_parse_from(all).expect("valid arguments").ring
    }

    #[test]
    fn defaults_compare_weak_and_strong_everywhere() {
        let plan = RingPlan::from_args(&parse(&["--cores", "0,1"])).expect("valid plan");
        assert_eq!(plan.configs.len(), 2 * 2 * 2);
        assert_eq!(plan.shape.queue_size, 256);
        assert_eq!(plan.shape.batch, 1);
        assert_eq!(plan.shape.warmup, 100_000);
        let labels: Vec<String> = plan.configs.iter().map(RingConfig::label).collect();
        assert!(labels.contains(&"model, event idx on, weak".to_string()), "{labels:?}");
        assert!(labels.contains(&"rust-vmm, event idx off, strong".to_string()), "{labels:?}");
    }

    #[test]
    fn attribute_adds_one_configuration_per_site() {
        let plan = RingPlan::from_args(&parse(&["--cores", "0,1", "--attribute", "--devices", "model", "--event-idx", "on"]))
            .expect("valid plan");
        let labels: Vec<&str> = plan.configs.iter().map(|config| config.barriers.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "weak",
                "strong",
                "site:avail-publish",
                "site:notify-check",
                "site:used-read",
                "site:interrupt-enable",
                "site:used-event-store"
            ]
        );
    }

    #[test]
    fn sites_add_custom_configuration() {
        let args = parse(&["--cores", "0,1", "--sites", "notify-check=strong, used-read=weak"]);
        let plan = RingPlan::from_args(&args).expect("valid plan");
        assert!(plan
            .configs
            .iter()
            .any(|config| config.barriers.label == "custom:notify-check=strong,used-read=weak"));
    }

    #[test]
    fn none_needs_unsafe_ablation() {
        let args = parse(&["--cores", "0,1", "--sites", "notify-check=none"]);
        let error = RingPlan::from_args(&args).expect_err("none without --unsafe-ablation");
        assert!(error.to_string().contains("--unsafe-ablation"), "{error}");

        let args = parse(&["--cores", "0,1", "--sites", "notify-check=none", "--unsafe-ablation"]);
        let result = RingPlan::from_args(&args);
        if cfg!(feature = "ablation") {
            assert!(result.is_ok(), "{result:?}");
        } else {
            let error = result.expect_err("ablation feature is off");
            assert!(error.to_string().contains("--features ablation"), "{error}");
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        let cases: [&[&str]; 7] = [
            &["--queue-size", "100"],
            &["--queue-size", "1"],
            &["--batch", "0"],
            &["--batch", "129"],
            &["--iterations", "0"],
            &["--sites", "notify=strong"],
            &["--modes", "custom"],
        ];
        for case in cases {
            let mut arguments = vec!["--cores", "0,1"];
            arguments.extend_from_slice(case);
            let result = RingPlan::from_args(&parse(&arguments));
            assert!(result.is_err(), "{case:?} was accepted");
        }
        assert!(parse_sites("used-read=strong,used-read=weak").is_err());
        assert!(parse_sites("used-read").is_err());
        assert!(parse_sites("used-read=full").is_err());
    }

    #[test]
    fn cores_must_differ() {
        assert!(RingPlan::from_args(&parse(&["--cores", "0,0"])).is_err());
        assert!(RingPlan::from_args(&parse(&["--cores", "0"])).is_err());
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101-000000");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723);
        assert_eq!(utc_timestamp(leap_day), "20000229-010203");
        let later = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(utc_timestamp(later), "20251231-235959");
    }
}
