//! The C allocator under the CPU backends' tensors.
//!
//! Burn's CPU backends allocate every tensor of a step afresh and free it when the step is done
//! with it. glibc serves each allocation over its mmap threshold (128 KiB, adjusted up to at most
//! 32 MiB) with a mapping of its own and unmaps it when freed, so the next step's tensor of the
//! same size starts again from fresh pages: a page fault and the kernel zeroing every 4 KiB of it.
//! On r50 inference at 800×1066 that was 15% of all samples and 3.6–4.1 s of system time over four
//! predictions (0.6 s with the settings below); `docs/performance.md` has the measurement.
//!
//! [`retain_freed_memory`] asks glibc to serve every allocation from its heaps and to keep freed
//! memory in the process for the next allocation instead of returning it to the kernel. The
//! process's peak resident memory stays what the largest step needs (measured at fixed sizes:
//! unchanged to within 1%); it is not given back while the process runs. With batches of
//! varying sizes (the original's multi-scale augmentation) freed blocks are reused by size and
//! some fragmentation is possible: a user who sees memory grow can set `GLIBC_TUNABLES` (for
//! example `glibc.malloc.mmap_threshold=33554432`) and this setting is not applied.

/// Whether the user has tuned glibc's allocator through its environment variables
/// (`GLIBC_TUNABLES` with a `glibc.malloc.` setting, or one of the older `MALLOC_*` variables):
/// their choice is then left as it is.
fn user_tuned_allocator(
    mut environment: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> bool {
    environment.any(|(name, value)| {
        let name = name.to_string_lossy();
        (name == "GLIBC_TUNABLES" && value.to_string_lossy().contains("glibc.malloc."))
            || name.starts_with("MALLOC_")
    })
}

/// Configures glibc's allocator for the CPU backends (see the module's documentation): no
/// allocation gets a mapping of its own, and freed memory is kept for reuse. Call it once at the
/// start of a program, before the first tensor. Returns whether the settings were applied; they
/// are not when the user tuned the allocator through the environment, or on a platform whose C
/// library is not glibc.
pub fn retain_freed_memory() -> bool {
    if user_tuned_allocator(std::env::vars_os()) {
        return false;
    }
    apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: `mallopt` only changes the allocator's parameters; both are documented glibc
    // parameters with valid values (no allocation by mapping; the largest trim threshold).
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuned(vars: &[(&str, &str)]) -> bool {
        user_tuned_allocator(vars.iter().map(|(n, v)| (n.into(), v.into())))
    }

    #[test]
    fn the_users_allocator_settings_are_left_alone() {
        assert!(tuned(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.mmap_threshold=65536"
        )]));
        assert!(tuned(&[("PATH", "/bin"), ("MALLOC_ARENA_MAX", "2")]));
        assert!(tuned(&[("MALLOC_TRIM_THRESHOLD_", "0")]));
        assert!(!tuned(&[("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")]));
        assert!(!tuned(&[("PATH", "/bin"), ("HOME", "/root")]));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_settings() {
        // `retain_freed_memory` itself may find the user's variables in this environment.
        assert!(apply());
        // Allocations over the old threshold still work, and their memory is kept.
        let big = vec![1f32; 16 << 20];
        assert_eq!(big.iter().sum::<f32>(), (16 << 20) as f32);
    }
}
