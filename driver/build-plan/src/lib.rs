//! What the driver package's build script (`driver/build.rs`) does, as a function of the
//! values Cargo gives a build script, so that every row, the Windows ones included, is
//! decided and tested on any host.
//!
//! Cargo describes the **target** to a build script through `CARGO_CFG_*` variables, filled
//! from `rustc --print cfg` for the target and `RUSTFLAGS`, never from profile settings (a
//! `panic = "abort"` profile still reads `CARGO_CFG_PANIC=unwind`). The build script's own
//! `cfg(windows)` is the **build host**. The plan depends on both, and on nothing else:
//!
//! | target | host | plan |
//! | --- | --- | --- |
//! | not Windows | any | [`Plan::NothingToLink`]: the package compiles to an empty library |
//! | Windows, MSVC, `+crt-static` | Windows | [`Plan::KernelDriver`]: wdk-build configures the kernel-mode link |
//! | Windows, MSVC, `+crt-static` | not Windows | [`Plan::TypeCheckOnly`]: no WDK here, so no kernel link; a warning says so |
//! | Windows, not MSVC | any | [`PlanError::NotMsvc`] |
//! | Windows, MSVC, no `+crt-static` | any | [`PlanError::StaticCrtMissing`] |

/// What Cargo passes the build script about the target, plus the one fact about the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildEnv {
    /// `CARGO_CFG_TARGET_OS`.
    pub target_os: String,
    /// `CARGO_CFG_TARGET_ENV`.
    pub target_env: String,
    /// `CARGO_CFG_TARGET_FEATURE`: comma-separated target features in effect.
    pub target_features: String,
    /// Whether the build script itself runs on Windows (its `cfg!(windows)`).
    pub host_is_windows: bool,
}

impl BuildEnv {
    /// Reads the target's description through `var` (`std::env::var` in a build script).
    pub fn from_cargo(var: impl Fn(&str) -> Option<String>, host_is_windows: bool) -> Self {
        let read = |key: &str| var(key).unwrap_or_default();
        Self {
            target_os: read("CARGO_CFG_TARGET_OS"),
            target_env: read("CARGO_CFG_TARGET_ENV"),
            target_features: read("CARGO_CFG_TARGET_FEATURE"),
            host_is_windows,
        }
    }

    fn has_target_feature(&self, feature: &str) -> bool {
        self.target_features.split(',').any(|f| f == feature)
    }
}

/// What the build script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Not a Windows target: the `.sys` exists only on Windows; nothing is configured.
    NothingToLink,
    /// `wdk_build::configure_wdk_binary_build()`: the kernel-mode link (`/DRIVER`,
    /// `/NODEFAULTLIB`, `/SUBSYSTEM:NATIVE`, `/KERNEL`, `/ENTRY:FxDriverEntry`,
    /// `/INTEGRITYCHECK`, the WDK library paths). Every Windows build of the package: it is
    /// a driver and nothing else, whatever the profile.
    KernelDriver,
    /// A Windows target built on another host (a type check against generated bindings):
    /// wdk-build needs a WDK and refuses other hosts, so the image is not linkable here.
    TypeCheckOnly,
}

/// A target the driver cannot be built for, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// A Windows target whose environment is not MSVC (e.g. `x86_64-pc-windows-gnu`).
    NotMsvc {
        /// The target's `CARGO_CFG_TARGET_ENV`.
        target_env: String,
    },
    /// An MSVC target without a statically linked C runtime: wdk-build refuses it
    /// (`ConfigError::StaticCrtNotEnabled`).
    StaticCrtMissing,
}

impl core::fmt::Display for PlanError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotMsvc { target_env } => write!(
                f,
                "ktimer: a Windows driver builds only for an MSVC target \
                 (x86_64-pc-windows-msvc, aarch64-pc-windows-msvc), not target_env \
                 `{target_env}`; the companion app is the crate that builds for windows-gnu"
            ),
            Self::StaticCrtMissing => write!(
                f,
                "ktimer: the kernel-mode link needs `-C target-feature=+crt-static` \
                 (wdk-build: StaticCrtNotEnabled). .cargo/config.toml sets it for MSVC \
                 targets; a RUSTFLAGS environment variable replaces that setting, so keep \
                 the flag in it"
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// The plan for `env`. See the module's table.
///
/// # Errors
///
/// A Windows target that is not MSVC, or lacks `+crt-static`.
pub fn plan(env: &BuildEnv) -> Result<Plan, PlanError> {
    if env.target_os != "windows" {
        return Ok(Plan::NothingToLink);
    }
    if env.target_env != "msvc" {
        return Err(PlanError::NotMsvc {
            target_env: env.target_env.clone(),
        });
    }
    if !env.has_target_feature("crt-static") {
        return Err(PlanError::StaticCrtMissing);
    }
    Ok(if env.host_is_windows {
        Plan::KernelDriver
    } else {
        Plan::TypeCheckOnly
    })
}

/// The warning the build script prints for [`Plan::TypeCheckOnly`].
pub const TYPE_CHECK_ONLY_WARNING: &str = "ktimer: Windows target on a non-Windows host: \
    the kernel-mode link is not configured (wdk-build needs a Windows host and the WDK); \
    this build type-checks the driver but cannot produce a loadable .sys";

#[cfg(test)]
mod tests {
    use super::*;

    /// `CARGO_CFG_TARGET_FEATURE` as rustc prints it for x86_64-pc-windows-msvc with the
    /// workspace's `+crt-static` (`.cargo/config.toml`).
    const MSVC_STATIC: &str = "cmpxchg16b,crt-static,fxsr,sse,sse2,sse3";
    const MSVC_DYNAMIC: &str = "cmpxchg16b,fxsr,sse,sse2,sse3";

    fn env(os: &str, target_env: &str, features: &str, host_is_windows: bool) -> BuildEnv {
        BuildEnv {
            target_os: os.into(),
            target_env: target_env.into(),
            target_features: features.into(),
            host_is_windows,
        }
    }

    #[test]
    fn a_linux_target_links_nothing_on_any_host() {
        for host in [false, true] {
            assert_eq!(
                plan(&env("linux", "gnu", "fxsr,sse,sse2", host)),
                Ok(Plan::NothingToLink)
            );
        }
    }

    #[test]
    fn a_windows_msvc_target_on_a_windows_host_is_always_a_kernel_driver() {
        // No profile, panic strategy or feature enters the decision: the test and release
        // builds of this package are the driver too (the defect of issue 17 was a
        // CARGO_CFG_PANIC gate that Cargo never satisfies from a profile).
        let env = env("windows", "msvc", MSVC_STATIC, true);
        assert_eq!(plan(&env), Ok(Plan::KernelDriver));
    }

    #[test]
    fn a_windows_target_on_another_host_only_type_checks() {
        assert_eq!(
            plan(&env("windows", "msvc", MSVC_STATIC, false)),
            Ok(Plan::TypeCheckOnly)
        );
    }

    #[test]
    fn a_windows_gnu_target_is_refused_on_every_host() {
        for host in [false, true] {
            let error = plan(&env("windows", "gnu", MSVC_STATIC, host)).unwrap_err();
            assert_eq!(
                error,
                PlanError::NotMsvc {
                    target_env: "gnu".into()
                }
            );
            assert!(error.to_string().contains("windows-gnu"));
        }
    }

    #[test]
    fn a_dynamic_c_runtime_is_refused_before_wdk_build_sees_it() {
        for host in [false, true] {
            let error = plan(&env("windows", "msvc", MSVC_DYNAMIC, host)).unwrap_err();
            assert_eq!(error, PlanError::StaticCrtMissing);
            assert!(error.to_string().contains("+crt-static"));
        }
    }

    #[test]
    fn a_feature_name_containing_crt_static_is_not_crt_static() {
        let env = env("windows", "msvc", "no-crt-static-x,sse2", true);
        assert_eq!(plan(&env), Err(PlanError::StaticCrtMissing));
    }

    #[test]
    fn the_environment_is_read_from_cargos_variables() {
        let vars = [
            ("CARGO_CFG_TARGET_OS", "windows"),
            ("CARGO_CFG_TARGET_ENV", "msvc"),
            ("CARGO_CFG_TARGET_FEATURE", MSVC_STATIC),
            // Present in every real build script run and deliberately ignored.
            ("CARGO_CFG_PANIC", "unwind"),
        ];
        let read = |key: &str| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        };
        let env = BuildEnv::from_cargo(read, true);
        assert_eq!(env, super::tests::env("windows", "msvc", MSVC_STATIC, true));
        assert_eq!(plan(&env), Ok(Plan::KernelDriver));
    }

    #[test]
    fn missing_variables_read_as_not_windows() {
        let env = BuildEnv::from_cargo(|_| None, true);
        assert_eq!(plan(&env), Ok(Plan::NothingToLink));
    }
}
