//! zinit's own log: `zinit: LEVEL (target) message` lines on stdout, and on `/dev/kmsg` when asked (a real
//! node's PID 1, so the messages survive in the kernel log).

use std::io::Write;
use std::sync::Mutex;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct Format;

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        write!(w, "zinit: {} ({}) ", meta.level(), meta.target())?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// stdout, plus /dev/kmsg when it could be opened.
struct Tee {
    kmsg: Option<Mutex<std::fs::File>>,
}

struct TeeWriter<'a> {
    kmsg: Option<&'a Mutex<std::fs::File>>,
}

impl Write for TeeWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(kmsg) = self.kmsg
            && let Ok(mut f) = kmsg.lock()
        {
            let _ = f.write_all(buf);
        }
        std::io::stdout().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Tee {
    type Writer = TeeWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        TeeWriter {
            kmsg: self.kmsg.as_ref(),
        }
    }
}

/// Install zinit's logger (`debug`: debug level; `RUST_LOG` overrides). With `kmsg`, lines also go to
/// `/dev/kmsg` if it is writable.
pub fn init_logging(debug: bool, kmsg: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if debug { "debug" } else { "info" })
    });
    let kmsg = kmsg
        .then(|| {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/kmsg")
                .ok()
        })
        .flatten()
        .map(Mutex::new);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Tee { kmsg })
        .event_format(Format)
        .try_init();
}
