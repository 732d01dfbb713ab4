//! The `log` backend: one line per record on COM1, with the uptime since the
//! PVH entry and the level, for example `[    0.001234] INFO  virtio_net: ...`.

use log::{LevelFilter, Log, Metadata, Record};

use crate::time;

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let micros = time::uptime_micros();
        crate::console::before_log();
        crate::println!(
            "[{:5}.{:06}] {:5} {}: {}",
            micros / 1_000_000,
            micros % 1_000_000,
            record.level(),
            record.target(),
            record.args()
        );
        crate::console::after_log();
    }

    fn flush(&self) {}
}

/// Installs the logger with `level` as the maximum level.
pub fn init(level: LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
