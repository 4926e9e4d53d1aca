//! Which accelerator VMs run with, found by trying: KVM when `/dev/kvm` boots a real guest
//! kernel, otherwise TCG (qemu's emulator), which works everywhere but runs guests several times
//! slower. The file's existence proves nothing: some machines have a `/dev/kvm` that runs only
//! paravirtualised guests and hangs with a stock kernel, so the probe boots the node's kernel
//! and waits, within a time limit, for it to get all the way to looking for its root file
//! system.

use std::path::Path;
use std::time::Duration;

use super::VmTools;
use crate::runtime::RuntimeError;
use crate::runtime::command::{Cmd, os};

/// How long the probe's guest kernel gets to reach its root file system under KVM (well under
/// a second with working KVM).
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// What the probe's kernel prints once it has initialised everything and found no root.
const PROBE_MARKER: &str = "Kernel panic";

/// How guests are run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accelerator {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// qemu's emulator, because KVM cannot be used here; the text says why.
    Tcg(String),
}

impl Accelerator {
    /// qemu's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg(_) => "tcg",
        }
    }

    /// What the node says about it: in its log, its directory entry and each VM's result.
    pub fn describe(&self) -> String {
        match self {
            Self::Kvm => "kvm".to_owned(),
            Self::Tcg(why) => format!("tcg: no usable KVM on this node ({why}), expect VMs to be slow"),
        }
    }
}

/// Which accelerator to use, as the farmer asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceleratorChoice {
    /// KVM if a guest kernel boots with it, else TCG.
    #[default]
    Auto,
    /// KVM, or no VMs at all.
    Kvm,
    /// TCG even where KVM works (for tests and for machines whose KVM misbehaves).
    Tcg,
}

impl std::str::FromStr for AcceleratorChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            other => Err(format!("unknown accelerator {other:?}: use auto, kvm or tcg")),
        }
    }
}

/// Decide the accelerator: `choice`, checked by booting `vmlinuz` under KVM (scratch files in
/// `scratch`). Errors only when KVM was demanded and does not work.
pub(crate) async fn choose(
    tools: &VmTools,
    vmlinuz: &Path,
    scratch: &Path,
    choice: AcceleratorChoice,
) -> Result<Accelerator, RuntimeError> {
    if choice == AcceleratorChoice::Tcg {
        return Ok(Accelerator::Tcg("the node was started with --vm-accel tcg".to_owned()));
    }
    match probed(tools, vmlinuz, scratch).await {
        Ok(()) => Ok(Accelerator::Kvm),
        Err(why) if choice == AcceleratorChoice::Auto => Ok(Accelerator::Tcg(why)),
        Err(why) => Err(RuntimeError::InvalidSetting {
            setting: "--vm-accel",
            value: "kvm".to_owned(),
            reason: format!("{why}; use --vm-accel auto to fall back to TCG"),
        }),
    }
}

/// Where probe outcomes are kept until the machine restarts (`/run` is emptied at boot), so
/// the agents of one machine probe once: a probe that fails costs [`PROBE_TIMEOUT`] of a core.
const PROBE_CACHE: &str = "/run/zgrid/kvm-probe";

/// [`kvm_boots`], or its outcome on this machine since it started, for this qemu and kernel.
async fn probed(tools: &VmTools, vmlinuz: &Path, scratch: &Path) -> Result<(), String> {
    let stamp = |p: &Path| {
        let meta = std::fs::metadata(p).ok();
        format!("{}:{:?}:{:?}", p.display(), meta.as_ref().map(|m| m.len()), meta.and_then(|m| m.modified().ok()))
    };
    let key = blake3::hash(format!("{}\n{}", stamp(&tools.qemu), stamp(vmlinuz)).as_bytes()).to_hex();
    let cached = Path::new(PROBE_CACHE).join(&key[..32]);
    if let Ok(text) = std::fs::read_to_string(&cached) {
        return match text.strip_prefix("no usable KVM: ") {
            Some(why) => Err(why.to_owned()),
            None => Ok(()),
        };
    }
    let outcome = kvm_boots(tools, vmlinuz, scratch).await;
    let text = match &outcome {
        Ok(()) => "kvm".to_owned(),
        Err(why) => format!("no usable KVM: {why}"),
    };
    let written =
        std::fs::create_dir_all(PROBE_CACHE).and_then(|()| crate::store::write_durably(&cached, text.as_bytes()));
    if let Err(e) = written {
        tracing::warn!(path = %cached.display(), error = %e, "cannot keep the KVM probe's outcome");
    }
    outcome
}

/// Boot `vmlinuz` under KVM without a root file system; `Err` says why KVM is not usable.
async fn kvm_boots(tools: &VmTools, vmlinuz: &Path, scratch: &Path) -> Result<(), String> {
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return Err(format!("cannot open /dev/kvm: {e}"));
    }
    std::fs::create_dir_all(scratch).map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let console = scratch.join("console.log");
    let _ = std::fs::remove_file(&console);
    let serial = format!("file:{}", console.display());
    let args = [
        os("-accel"),
        os("kvm"),
        os("-cpu"),
        os("host"),
        os("-m"),
        os("256"),
        os("-nodefaults"),
        os("-no-user-config"),
        os("-display"),
        os("none"),
        os("-no-reboot"),
        os("-serial"),
        os(&serial),
        os("-kernel"),
        vmlinuz.as_os_str(),
        os("-append"),
        os("console=ttyS0 panic=-1"),
    ];
    let outcome = Cmd::new("kvm-probe", &tools.qemu, args, PROBE_TIMEOUT).output().await;
    let printed = std::fs::read_to_string(&console).unwrap_or_default();
    if printed.contains(PROBE_MARKER) {
        return Ok(());
    }
    Err(match outcome {
        Err(RuntimeError::Timeout { .. }) => match printed.lines().count() {
            0 => format!("a guest kernel printed nothing in {} s under KVM", PROBE_TIMEOUT.as_secs()),
            _ => format!("a guest kernel did not finish booting in {} s under KVM", PROBE_TIMEOUT.as_secs()),
        },
        Err(e) => e.to_string(),
        Ok(output) => {
            // Its first line says why; what follows (an assertion with qemu's source path) does not.
            let said = crate::runtime::command::excerpt(&output.stderr);
            let said = said.lines().next().unwrap_or_default().trim_start_matches("qemu-system-x86_64: ");
            format!("qemu with KVM exited ({}) before the guest kernel booted: {said}", output.status)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_tcg_says_why() {
        assert_eq!("auto".parse(), Ok(AcceleratorChoice::Auto));
        assert!("hvf".parse::<AcceleratorChoice>().unwrap_err().contains("auto, kvm or tcg"));
        let tcg = Accelerator::Tcg("cannot open /dev/kvm: No such file".into());
        assert_eq!(tcg.name(), "tcg");
        assert!(tcg.describe().starts_with("tcg: no usable KVM on this node (cannot open /dev/kvm"));
    }
}
