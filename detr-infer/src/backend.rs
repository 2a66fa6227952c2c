//! The backend chosen at run time: flex and ndarray (CPU) are always built; wgpu and cuda
//! when the crate is built with the `wgpu` / `cuda` cargo features.
//!
//! # GPU devices
//!
//! Burn's GPU runtimes (burn-wgpu, burn-cuda, both on cubecl) report a missing device by
//! panicking, and run every device operation on a runtime thread that catches panics, logs
//! `Task failed` and carries on. Both are turned into errors here:
//!
//! * [`probe_device`] runs a tiny computation on a device before any work, and turns a
//!   missing device, driver or runtime library into [`InferError::Device`] with what the
//!   runtime said and what to install;
//! * [`stop_on_device_failure`] makes any later failure of a device operation (a rejected
//!   kernel launch, say) stop the process with a clear message and exit code
//!   [`DEVICE_FAILURE_EXIT_CODE`], instead of letting a run go on with an operation's result
//!   missing.
//!
//! [`run_on`] does both for the GPU backends; binaries with their own dispatch call
//! [`prepare_devices`].

use detr_model::DetrBackend;
use std::fmt;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::error::{InferError, Result};

/// A Burn backend selectable with `--backend`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn-flex on the CPU (the default; far faster convolutions than ndarray).
    #[default]
    Flex,
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-wgpu (Vulkan, Metal, DX12); needs the `wgpu` feature.
    Wgpu,
    /// burn-cuda (NVIDIA); needs the `cuda` feature.
    Cuda,
}

impl BackendKind {
    /// The name used on the command line and in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Whether this binary was built with this backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Flex | Self::Ndarray => true,
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = InferError;

    /// Parses a name as `--backend` does (any case).
    fn from_str(s: &str) -> Result<Self> {
        <Self as clap::ValueEnum>::from_str(s, true).map_err(|_| {
            InferError::Config(format!(
                "unknown backend `{s}` (expected flex, ndarray, wgpu or cuda)"
            ))
        })
    }
}

/// Work that is generic over the backend; [`run_on`] / [`run_on_devices`] pick the backend
/// at run time. Both binaries dispatch through it.
pub trait BackendTask {
    /// What the work returns.
    type Output;
    /// Runs the work on backend `B` with `devices` (never empty; the first is the main one).
    fn run<B: DetrBackend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Runs `task` on the backend `kind` (its default device). Fails when the backend was not
/// compiled into this build or, for a GPU backend, when its device cannot run
/// ([`probe_device`]); a later device failure stops the process ([`stop_on_device_failure`]).
pub fn run_on<T: BackendTask>(kind: BackendKind, task: T) -> Result<T::Output> {
    run_on_devices(kind, &[], task)
}

/// Runs `task` on the backend `kind` with the devices of the given indices (`--devices 0,1`;
/// none: the default device), like [`run_on`].
///
/// The CPU backends have one device: several indices there give that many copies of it, on
/// which data-parallel training runs shards of each batch in parallel threads (flex runs many
/// small operations on one core, so two shards use both cores of a small machine better than
/// one). On wgpu a single index 0 is the default adapter, others are the discrete GPUs of
/// that index; on cuda an index is the CUDA device ordinal.
pub fn run_on_devices<T: BackendTask>(
    kind: BackendKind,
    indices: &[usize],
    task: T,
) -> Result<T::Output> {
    let copies = indices.len().max(1);
    match kind {
        BackendKind::Flex => Ok(task.run::<burn::backend::Flex>(vec![Default::default(); copies])),
        BackendKind::Ndarray => {
            Ok(task.run::<burn::backend::NdArray>(vec![Default::default(); copies]))
        }
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            use burn::backend::wgpu::WgpuDevice;
            let devices = match indices {
                [] | [0] => vec![WgpuDevice::default()],
                _ => indices
                    .iter()
                    .map(|&i| WgpuDevice::DiscreteGpu(i))
                    .collect(),
            };
            run_on_gpu::<burn::backend::Wgpu, T>(kind, devices, task)
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            use burn::backend::cuda::CudaDevice;
            let devices = if indices.is_empty() {
                vec![CudaDevice::default()]
            } else {
                indices.iter().map(|&i| CudaDevice::new(i)).collect()
            };
            run_on_gpu::<burn::backend::Cuda, T>(kind, devices, task)
        }
        #[allow(unreachable_patterns)]
        other => Err(not_compiled(other)),
    }
}

#[allow(dead_code)] // used only with the `wgpu` or `cuda` feature
fn run_on_gpu<B: DetrBackend, T: BackendTask>(
    kind: BackendKind,
    devices: Vec<B::Device>,
    task: T,
) -> Result<T::Output> {
    prepare_devices::<B>(kind, &devices)?;
    Ok(task.run::<B>(devices))
}

/// The error for a backend this binary was built without.
pub fn not_compiled(kind: BackendKind) -> InferError {
    InferError::Config(format!(
        "backend `{kind}` is not part of this build: rebuild with `--features {kind}`"
    ))
}

/// Exit status of a process stopped by [`stop_on_device_failure`].
pub const DEVICE_FAILURE_EXIT_CODE: i32 = 3;

/// Checks every device of `devices` with [`probe_device`], then (for the GPU backends) makes
/// a later device failure stop the process ([`stop_on_device_failure`]). Call it once, before
/// the work, with the devices the work will use.
pub fn prepare_devices<B: Backend>(kind: BackendKind, devices: &[B::Device]) -> Result<()> {
    for (index, device) in devices.iter().enumerate() {
        probe_device::<B>(kind, index, device)?;
    }
    if matches!(kind, BackendKind::Wgpu | BackendKind::Cuda) {
        stop_on_device_failure(kind);
    }
    Ok(())
}

/// Runs a tiny computation on `device` and reads it back: a backend without a usable device
/// (no GPU, no driver, no runtime library) gives [`InferError::Device`] naming the device
/// and saying what the runtime reported, instead of a panic. `index` is the device's
/// position in the user's `--devices` list, for the message.
pub fn probe_device<B: Backend>(kind: BackendKind, index: usize, device: &B::Device) -> Result<()> {
    install_hook();
    *lock_capture() = Some(Vec::new());
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let t = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], device);
        t.sum()
            .try_into_data()
            .map(|d| d.convert::<f32>().to_vec::<f32>())
    }));
    let captured = lock_capture().take().unwrap_or_default();
    let detail = match outcome {
        Ok(Ok(Ok(v))) if v == [6.0] => return Ok(()),
        Ok(Ok(Ok(v))) => format!("a test sum gave {v:?} instead of [6.0]"),
        Ok(Ok(Err(e))) => format!("{e:?}"),
        Ok(Err(e)) => format!("{e:?}"),
        // The runtime's own message (often from its device thread) says more than the
        // panic that reached this thread (a closed channel, say).
        Err(payload) => captured
            .iter()
            .find(|(thread, _)| is_device_thread(thread))
            .or_else(|| captured.first())
            .map(|(_, msg)| msg.clone())
            .unwrap_or_else(|| payload_message(payload.as_ref())),
    };
    Err(InferError::Device {
        backend: kind,
        device: format!("{device:?} (device {index})"),
        detail: first_line(&detail),
        hint: device_hint(kind),
    })
}

/// What a user can do about a backend without a device.
fn device_hint(kind: BackendKind) -> String {
    match kind {
        BackendKind::Wgpu => "wgpu needs a GPU driver: on Linux a Vulkan driver (the GPU \
            vendor's, or Mesa's `mesa-vulkan-drivers`, whose llvmpipe runs on the CPU); \
            `--backend flex` runs on the CPU without one"
            .into(),
        BackendKind::Cuda => "burn-cuda needs an NVIDIA GPU with its driver (libcuda.so) and \
            the CUDA runtime compiler (libnvrtc.so) where the loader finds them (e.g. \
            LD_LIBRARY_PATH); check `nvidia-smi`, or use `--backend wgpu` or `flex`"
            .into(),
        BackendKind::Flex | BackendKind::Ndarray => "this CPU backend should always run".into(),
    }
}

/// From now on, a failure on one of Burn's GPU runtime threads (which the runtime catches,
/// logs as `Task failed` and carries on from) prints a clear error and ends the process with
/// [`DEVICE_FAILURE_EXIT_CODE`]: every result computed after it could be wrong. Checkpoints
/// already written are kept (they are written atomically).
pub fn stop_on_device_failure(kind: BackendKind) {
    install_hook();
    let _ = FATAL_BACKEND.set(kind);
    FATAL.store(true, Ordering::SeqCst);
}

/// Records device failures ([`device_failure`]) without stopping the process: for tests and
/// for callers that check [`device_failure`] themselves.
pub fn record_device_failures() {
    install_hook();
}

/// The first failure seen on a GPU runtime thread since [`stop_on_device_failure`] or
/// [`record_device_failures`] was called, if any.
pub fn device_failure() -> Option<String> {
    DEVICE_FAILURE.get().cloned()
}

/// Prefix of the names of cubecl's device threads (`DSU-…`, `DSD-…`; cubecl-common 0.10,
/// pinned through Burn =0.21.0), on which burn-wgpu and burn-cuda run device operations.
const DEVICE_THREAD_PREFIX: &str = "DS";

static HOOK: Once = Once::new();
static FATAL: AtomicBool = AtomicBool::new(false);
static FATAL_BACKEND: OnceLock<BackendKind> = OnceLock::new();
static DEVICE_FAILURE: OnceLock<String> = OnceLock::new();
/// While [`probe_device`] runs: every panic's `(thread, message)`, printed by nobody.
#[allow(clippy::type_complexity)]
static CAPTURE: Mutex<Option<Vec<(String, String)>>> = Mutex::new(None);

fn lock_capture() -> std::sync::MutexGuard<'static, Option<Vec<(String, String)>>> {
    CAPTURE.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_device_thread(name: &str) -> bool {
    name.starts_with(DEVICE_THREAD_PREFIX)
}

fn first_line(s: &str) -> String {
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim();
    const MAX: usize = 600;
    if line.len() > MAX {
        let mut end = MAX;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line.to_string()
    }
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without message".into()
    }
}

fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("").to_string();
            let message = payload_message(info.payload());
            if let Some(captured) = lock_capture().as_mut() {
                captured.push((name, message));
                return;
            }
            if is_device_thread(&name) {
                let _ = DEVICE_FAILURE.set(message.clone());
                if FATAL.load(Ordering::SeqCst) {
                    let backend = FATAL_BACKEND.get().map_or("GPU", |k| k.name());
                    let at = info
                        .location()
                        .map(|l| format!(" (at {l})"))
                        .unwrap_or_default();
                    eprintln!(
                        "error: a {backend} device operation failed: {}{at}\n\
                         The run is stopped: Burn's GPU runtime would carry on without this \
                         operation's result, so every number computed after it could be \
                         wrong. Checkpoints written before this point are intact.",
                        first_line(&message)
                    );
                    std::process::exit(DEVICE_FAILURE_EXIT_CODE);
                }
            }
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic as burn-wgpu and burn-cuda meet it: on a runtime thread named like cubecl's,
    /// caught there (cubecl logs `Task failed` and carries on).
    fn panic_on_device_thread(message: &'static str) {
        std::thread::Builder::new()
            .name("DSD-test-0".into())
            .spawn(move || {
                let caught = panic::catch_unwind(|| panic!("{message}"));
                assert!(caught.is_err());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_working_device_passes_the_probe() {
        probe_device::<burn::backend::Flex>(BackendKind::Flex, 0, &Default::default()).unwrap();
        prepare_devices::<burn::backend::NdArray>(BackendKind::Ndarray, &[Default::default()])
            .unwrap();
    }

    #[test]
    fn a_caught_failure_on_a_device_thread_is_recorded() {
        record_device_failures();
        panic_on_device_thread("wgpu error: Validation Error (test)");
        assert_eq!(
            device_failure().as_deref(),
            Some("wgpu error: Validation Error (test)")
        );
    }

    const CHILD: &str = "DETR_INFER_BACKEND_TEST_CHILD";

    /// Run in a child process (the test binary itself): the failure must end the process
    /// with [`DEVICE_FAILURE_EXIT_CODE`] and a clear message, although the runtime caught it.
    #[test]
    fn a_device_failure_stops_the_process() {
        if std::env::var_os(CHILD).is_some() {
            stop_on_device_failure(BackendKind::Wgpu);
            panic_on_device_thread("Binding with size 18446744073709551552 (test)");
            // Not reached: the hook exits.
            std::process::exit(0);
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "backend::tests::a_device_failure_stops_the_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(DEVICE_FAILURE_EXIT_CODE),
            "{stderr}"
        );
        assert!(
            stderr.contains("error: a wgpu device operation failed: Binding with size"),
            "{stderr}"
        );
        assert!(stderr.contains("The run is stopped"), "{stderr}");
    }
}
