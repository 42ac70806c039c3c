//! Project commands, run as `cargo xtask <command>` (alias in `.cargo/config.toml`).
//!
//! `cargo xtask derive --name <name> --description <text> --out <dir>` makes a new driver
//! project from this one: a copy of the repository (without `target/` and `.git/`) in which
//! the template's own names are replaced — package and crate names, the device,
//! symbolic-link and hardware-ID names, the INX (file name, sections, service, strings), the
//! device interface GUID (a new one), the pool tags and the IOCTL device type — so that the
//! new driver can be installed next to this one, and in which the new driver's one-line
//! description replaces the template's (README title, every package's `description`, the
//! INX header). The derivation is driven by an explicit list of the template's identifiers
//! ([`Template`]). It refuses to run, and writes nothing, when an identifier is missing where
//! it is expected (the template changed under the list) or when an old name would survive in
//! the copy, in any letter case; it refuses an output directory that exists.

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};
use std::{env, fs};

const USAGE: &str = "\
usage: cargo xtask derive --name <name> --description <text> --out <dir> [--bare] [options]

Copies this driver project to <dir> (which must not exist) under new names.

  --bare                     a bare driver instead of the timer driver: the seam, the safe
                             kernel layer, the KMDF shell, the simulator and the Windows
                             checks of this project around a one-IOCTL example driver
                             (templates/bare), with no timer service, timer ABI or timer
                             scenarios

  --name <name>              package, crate, .sys, service and INX name: lower-case letters
                             and digits, starting with a letter (e.g. tickdrv)
  --description <text>       what the new driver does, one line (e.g. \"Counts ticks for user
                             mode\"): the README title, every package's description and the
                             INX header; asked for when left out on a terminal, required
                             otherwise
  --out <dir>                where the new project goes; refused if it exists
  --display-name <Name>      device, symbolic-link and hardware-ID name
                             (default: <name> with a capital first letter)
  --pool-tag-prefix <XY>     two letters or digits that start the driver's pool tags
                             (default: the display name's first two)
  --device-type <0xNNNN>     IOCTL device type, 0x8000..=0xFFFF (default: random)
  --interface-guid <GUID>    device interface GUID (default: a new random one)
";

/// The template's own identifiers: what [`derive()`] replaces. Change this when the template's
/// names change; a derivation whose identifiers are not where this list expects them fails.
struct Template {
    /// Package, crate, binary, service and INX name (`ktimer`, `ktimer-abi`, `ktimer_abi`, ...).
    name: &'static str,
    /// Device, symbolic-link and hardware-ID name; INX section names.
    display: &'static str,
    /// Device interface GUID, as text.
    interface_guid: &'static str,
    /// IOCTL device type, as written in the sources (also the top half of every IOCTL code).
    device_type: &'static str,
    /// Pool tags.
    pool_tags: &'static [&'static str],
    /// Identifiers that contain the upper-case name but belong to the kernel (Windows'
    /// timer object), never renamed.
    kernel_names: &'static [&'static str],
    /// The README, whose first line (`# <name> — <description>`) gets the new description.
    readme: &'static str,
    /// The `.sys` package's manifest: its `description` is the project's one-line
    /// description, replaced by the new one (every other package's keeps its role after it).
    main_manifest: &'static str,
}

const TEMPLATE: Template = Template {
    name: "ktimer",
    display: "KTimer",
    interface_guid: "E7A5882E-BD5A-4A1F-8C79-BBD912892923",
    device_type: "0x8A7E",
    pool_tags: &["KTsv", "KTwf"],
    kernel_names: &["KTIMER", "PKTIMER", "PRKTIMER", "_KTIMER", "KTIMERs"],
    readme: "README.md",
    main_manifest: "driver/Cargo.toml",
};

/// One replacement, and the files (relative, `/`-separated) where its old text must occur.
struct Rule {
    what: &'static str,
    old: String,
    new: String,
    expected_in: Vec<&'static str>,
}

/// The new driver's identity.
#[derive(Debug, PartialEq, Eq)]
struct Identity {
    name: String,
    display: String,
    pool_tag_prefix: String,
    device_type: u16,
    interface_guid: u128,
    /// What the driver does, one line.
    description: String,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[OsString]) -> Result<(), String> {
    let args: Vec<String> = args
        .iter()
        .map(|arg| {
            arg.to_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("argument is not UTF-8: {}", arg.to_string_lossy()))
        })
        .collect::<Result<_, _>>()?;
    match args.split_first() {
        Some((command, rest)) if command == "derive" => {
            if rest.iter().any(|arg| arg == "--help" || arg == "-h") {
                print!("{USAGE}");
                return Ok(());
            }
            let layout = if rest.iter().any(|arg| arg == "--bare") {
                Layout::Bare
            } else {
                Layout::Full
            };
            let rest: Vec<String> = rest
                .iter()
                .filter(|arg| *arg != "--bare")
                .cloned()
                .collect();
            let (identity, out) = parse_derive(&rest, std::io::stdin().is_terminal(), ask)?;
            let source = template_root()?;
            derive(&source, &out, &identity, layout)?;
            after_derive(&out);
            if layout == Layout::Bare {
                fill_line_counts(&out, &identity.name)?;
            }
            print_summary(&out, &identity);
            Ok(())
        }
        Some((help, _)) if help == "--help" || help == "-h" || help == "help" => {
            print!("{USAGE}");
            Ok(())
        }
        Some((other, _)) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
        None => Err(format!("no command\n\n{USAGE}")),
    }
}

/// The repository this xtask belongs to.
fn template_root() -> Result<PathBuf, String> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .ok_or("the xtask package has no parent directory")?;
    fs::canonicalize(root).map_err(|error| format!("{}: {error}", root.display()))
}

/// Parses `derive`'s options. A missing `--description` is asked for with `ask` when stdin
/// is a `terminal`.
fn parse_derive(
    args: &[String],
    terminal: bool,
    ask: impl FnOnce() -> Result<String, String>,
) -> Result<(Identity, PathBuf), String> {
    let mut name = None;
    let mut description = None;
    let mut out = None;
    let mut display = None;
    let mut pool_tag_prefix = None;
    let mut device_type = None;
    let mut interface_guid = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let slot = match flag.as_str() {
            "--name" => &mut name,
            "--description" => &mut description,
            "--out" => &mut out,
            "--display-name" => &mut display,
            "--pool-tag-prefix" => &mut pool_tag_prefix,
            "--device-type" => &mut device_type,
            "--interface-guid" => &mut interface_guid,
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        };
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        *slot = Some(value.clone());
    }
    let name = name.ok_or_else(|| format!("--name is required\n\n{USAGE}"))?;
    let out = out.ok_or_else(|| format!("--out is required\n\n{USAGE}"))?;
    let mut identity = identity(
        name,
        display,
        pool_tag_prefix,
        device_type.as_deref(),
        interface_guid.as_deref(),
    )?;
    // Asked for last, once everything else is known to be valid.
    let description = match description {
        Some(text) => text,
        None if terminal => ask()?,
        None => {
            return Err(
                "--description \"<what the driver does, one line>\" is required: it goes \
                 into the README title and the package descriptions, and stdin is not a \
                 terminal to ask on"
                    .to_owned(),
            );
        }
    };
    identity.description = checked_description(&description)?;
    Ok((identity, PathBuf::from(out)))
}

/// Asks for the description on the terminal.
fn ask() -> Result<String, String> {
    let mut stderr = std::io::stderr();
    let _ = write!(
        stderr,
        "What does the new driver do, in one line (README title, package descriptions)? "
    );
    let _ = stderr.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|error| format!("reading the description: {error}"))?;
    Ok(line)
}

/// A description the derivation can write: one line of text, without the template's name.
fn checked_description(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() || text.chars().any(char::is_control) || text.chars().count() > 200 {
        return Err(format!(
            "--description `{text}`: one line of text, 1 to 200 characters"
        ));
    }
    if text.to_ascii_lowercase().contains(TEMPLATE.name) {
        return Err(format!(
            "--description `{text}` names the template (`{}`): describe the new driver",
            TEMPLATE.name
        ));
    }
    Ok(text.to_owned())
}

/// Validates the user's choices and fills in the defaults.
fn identity(
    name: String,
    display: Option<String>,
    pool_tag_prefix: Option<String>,
    device_type: Option<&str>,
    interface_guid: Option<&str>,
) -> Result<Identity, String> {
    let mut letters = name.chars();
    let name_ok = letters.next().is_some_and(|c| c.is_ascii_lowercase())
        && letters.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && (2..=32).contains(&name.len());
    if !name_ok {
        return Err(format!(
            "--name `{name}`: use 2 to 32 lower-case letters and digits, starting with a letter \
             (it names packages, crates, the .sys, the service and the INX)"
        ));
    }
    if name.contains(TEMPLATE.name) {
        return Err(format!(
            "--name `{name}` contains the template's name `{}`",
            TEMPLATE.name
        ));
    }
    let display = display.unwrap_or_else(|| capitalized(&name));
    let display_ok = display
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && display.chars().all(|c| c.is_ascii_alphanumeric())
        && (2..=32).contains(&display.len());
    if !display_ok
        || display.contains(TEMPLATE.display)
        || display.to_ascii_lowercase().contains(TEMPLATE.name)
    {
        return Err(format!(
            "--display-name `{display}`: use 2 to 32 letters and digits, starting with a letter, \
             other than the template's `{}`",
            TEMPLATE.display
        ));
    }
    let pool_tag_prefix = pool_tag_prefix.unwrap_or_else(|| display.chars().take(2).collect());
    let old_prefix: String = TEMPLATE.pool_tags[0].chars().take(2).collect();
    if pool_tag_prefix.len() != 2
        || !pool_tag_prefix.chars().all(|c| c.is_ascii_alphanumeric())
        || pool_tag_prefix == old_prefix
    {
        return Err(format!(
            "--pool-tag-prefix `{pool_tag_prefix}`: two letters or digits, not the template's \
             `{old_prefix}`"
        ));
    }
    let old_device_type = parse_device_type(TEMPLATE.device_type)?;
    let device_type = match device_type {
        Some(text) => parse_device_type(text)?,
        None => random_device_type(old_device_type),
    };
    if device_type == old_device_type {
        return Err(format!(
            "--device-type: the template's own device type {}",
            TEMPLATE.device_type
        ));
    }
    let old_guid = parse_guid(TEMPLATE.interface_guid)?;
    let interface_guid = match interface_guid {
        Some(text) => parse_guid(text)?,
        None => random_guid(),
    };
    if interface_guid == old_guid {
        return Err("--interface-guid: the template's own GUID; make a new one".to_owned());
    }
    Ok(Identity {
        name,
        display,
        pool_tag_prefix,
        device_type,
        interface_guid,
        description: String::new(),
    })
}

fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

fn parse_device_type(text: &str) -> Result<u16, String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    match u16::from_str_radix(digits, 16) {
        Ok(value) if value >= 0x8000 => Ok(value),
        _ => Err(format!(
            "device type `{text}`: a hexadecimal number in the vendor range 0x8000..=0xFFFF"
        )),
    }
}

fn parse_guid(text: &str) -> Result<u128, String> {
    let bare = text.trim_start_matches('{').trim_end_matches('}');
    let groups: Vec<&str> = bare.split('-').collect();
    let shape_ok = groups.iter().map(|group| group.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|group| group.chars().all(|c| c.is_ascii_hexdigit()));
    if !shape_ok {
        return Err(format!(
            "GUID `{text}`: expected XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX (hex, braces optional)"
        ));
    }
    u128::from_str_radix(&groups.concat(), 16).map_err(|error| format!("GUID `{text}`: {error}"))
}

/// `E7A5882E-BD5A-4A1F-8C79-BBD912892923` form (upper case, no braces).
fn guid_text(guid: u128) -> String {
    let hex = format!("{guid:032X}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A Rust hexadecimal literal of the `digits` lowest hex digits of `value`, grouped by four
/// (`0xE7A5_882E`).
fn hex_literal(value: u128, digits: usize) -> String {
    let hex = format!("{value:032X}");
    let hex = &hex[32 - digits..];
    let mut literal = String::from("0x");
    for (index, digit) in hex.chars().enumerate() {
        if index > 0 && index % 4 == 0 {
            literal.push('_');
        }
        literal.push(digit);
    }
    literal
}

/// 64 unpredictable bits from the standard library's randomly keyed hasher (seeded from the
/// operating system's random source), without a dependency.
fn random_u64(salt: u64) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(salt);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// A random (version 4, RFC 4122 variant) GUID.
fn random_guid() -> u128 {
    let mut guid = (u128::from(random_u64(1)) << 64) | u128::from(random_u64(2));
    guid = (guid & !(0xF << 76)) | (0x4 << 76);
    guid = (guid & !(0b11 << 62)) | (0b10 << 62);
    guid
}

fn random_device_type(avoid: u16) -> u16 {
    // A handful of draws: two of them both hitting `avoid` is a 1 in 2^30 event.
    (3..64)
        .map(|salt| 0x8000 | (random_u64(salt) & 0x7FFF))
        .filter_map(|candidate| u16::try_from(candidate).ok())
        .find(|&candidate| candidate != avoid)
        .unwrap_or(if avoid == 0x8000 { 0x8001 } else { 0x8000 })
}

/// The replacements, in the order they are applied (longer and more specific first).
fn rules(new: &Identity) -> Result<Vec<Rule>, String> {
    let old_guid = parse_guid(TEMPLATE.interface_guid)?;
    let old_upper = TEMPLATE.name.to_ascii_uppercase();
    let new_upper = new.name.to_ascii_uppercase();
    let mut rules = vec![
        Rule {
            what: "device interface GUID (text)",
            old: guid_text(old_guid),
            new: guid_text(new.interface_guid),
            expected_in: vec!["driver/abi/src/device.rs"],
        },
        Rule {
            what: "device interface GUID (u128 literal)",
            old: hex_literal(old_guid, 32),
            new: hex_literal(new.interface_guid, 32),
            expected_in: vec!["driver/abi/src/device.rs"],
        },
        Rule {
            what: "device interface GUID (first field literal, in tests)",
            old: hex_literal(old_guid >> 96, 8),
            new: hex_literal(new.interface_guid >> 96, 8),
            expected_in: vec![],
        },
        Rule {
            what: "IOCTL device type (and the top half of every IOCTL code)",
            old: TEMPLATE.device_type.to_owned(),
            new: format!("0x{:04X}", new.device_type),
            expected_in: vec!["driver/abi/src/ioctl.rs"],
        },
    ];
    for (index, old_tag) in TEMPLATE.pool_tags.iter().enumerate() {
        let suffix: String = old_tag.chars().skip(2).collect();
        rules.push(Rule {
            what: "pool tag",
            old: (*old_tag).to_owned(),
            new: format!("{}{suffix}", new.pool_tag_prefix),
            expected_in: match index {
                0 => vec!["driver/service/src/config.rs"],
                _ => vec!["driver/kmdf/src/timer_logic.rs"],
            },
        });
    }
    rules.extend(upper_case_rules(&old_upper, &new_upper));
    rules.push(Rule {
        what: "device, symbolic-link, hardware-ID and INX section names",
        old: TEMPLATE.display.to_owned(),
        new: new.display.clone(),
        expected_in: vec!["driver/abi/src/device.rs", "driver/ktimer.inx"],
    });
    rules.push(Rule {
        what: "package, crate, binary, service and INX names",
        old: TEMPLATE.name.to_owned(),
        new: new.name.clone(),
        expected_in: vec![
            "driver/Cargo.toml",
            "driver/ktimer.inx",
            "tests/ktimer-test/Cargo.toml",
        ],
    });
    Ok(rules)
}

/// The replacements of the upper-case name: IOCTL names, environment variables, markers.
fn upper_case_rules(old_upper: &str, new_upper: &str) -> Vec<Rule> {
    [
        (
            "IOCTL code names",
            format!("IOCTL_{old_upper}_"),
            format!("IOCTL_{new_upper}_"),
            vec!["driver/abi/src/ioctl.rs"],
        ),
        (
            "IOCTL device type name",
            format!("FILE_DEVICE_{old_upper}"),
            format!("FILE_DEVICE_{new_upper}"),
            vec!["driver/abi/src/ioctl.rs"],
        ),
        (
            "fuzz replay environment variable",
            format!("{old_upper}_FUZZ_"),
            format!("{new_upper}_FUZZ_"),
            vec![],
        ),
        (
            "Wine rig environment variables",
            format!("{old_upper}_WINE_"),
            format!("{new_upper}_WINE_"),
            vec![],
        ),
        (
            "Wine rig session markers",
            format!("{old_upper}-RIG"),
            format!("{new_upper}-RIG"),
            vec!["tests/wine/run.sh"],
        ),
        (
            "model-based test environment variables",
            format!("{old_upper}_MODEL_"),
            format!("{new_upper}_MODEL_"),
            vec![],
        ),
        (
            "storm test environment variables",
            format!("{old_upper}_STORM_"),
            format!("{new_upper}_STORM_"),
            vec![],
        ),
    ]
    .into_iter()
    .map(|(what, old, new, expected_in)| Rule {
        what,
        old,
        new,
        expected_in,
    })
    .collect()
}

/// Where an old name survives in `text`, one description per finding.
fn leftovers(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for tag in TEMPLATE.pool_tags {
        if text.contains(tag) {
            found.push(format!("`{tag}`"));
        }
    }
    let lower = text.to_ascii_lowercase();
    if let Ok(old_guid) = parse_guid(TEMPLATE.interface_guid) {
        for form in [
            guid_text(old_guid),
            hex_literal(old_guid, 32),
            hex_literal(old_guid >> 96, 8),
            format!("{old_guid:032x}"),
        ] {
            if lower.contains(&form.to_ascii_lowercase()) {
                found.push(format!("the template's interface GUID (`{form}`)"));
            }
        }
    }
    if lower.contains(&TEMPLATE.device_type.to_ascii_lowercase()) {
        found.push(format!(
            "the template's device type (`{}`)",
            TEMPLATE.device_type
        ));
    }
    // The name, in any letter case (the display name is one of them), may only appear as
    // one of the kernel's own identifiers, exactly. Words joined by `-` are one token, so
    // that a marker such as the Wine rig's `<NAME>-RIG` is not taken for the kernel's name.
    let lower_name = TEMPLATE.name.to_ascii_lowercase();
    for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')) {
        if token.to_ascii_lowercase().contains(&lower_name)
            && !TEMPLATE.kernel_names.contains(&token)
        {
            found.push(format!("`{token}`"));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The template's INX, relative to the root.
fn inx_path() -> String {
    format!("driver/{}.inx", TEMPLATE.name)
}

/// `text` (of the template's file `path`, already renamed) with the new driver's description
/// in place of the template's, or `None` if the file has no place for one: the README's title
/// line, the `description` of a manifest's `[package]` (the `.sys` package's is the
/// description; every other package's keeps its role after it), the INX's header line.
fn described_text(path: &str, text: &str, identity: &Identity) -> Option<String> {
    let description = &identity.description;
    let mut changed = false;
    let mut table = String::new();
    let mut lines: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        let (body, end) = line
            .strip_suffix("\r\n")
            .map(|body| (body, "\r\n"))
            .or_else(|| line.strip_suffix('\n').map(|body| (body, "\n")))
            .unwrap_or((line, ""));
        let replacement = if path == TEMPLATE.readme {
            (lines.is_empty() && body.starts_with("# "))
                .then(|| format!("# {} — {description}", identity.name))
        } else if path == "Cargo.toml" || path.ends_with("/Cargo.toml") {
            if body.starts_with('[') {
                body.trim().clone_into(&mut table);
            }
            let old = body
                .strip_prefix("description = \"")
                .and_then(|rest| rest.strip_suffix('"'));
            match old {
                Some(_) if table == "[package]" && path == TEMPLATE.main_manifest => {
                    Some(format!("description = \"{}\"", toml_escaped(description)))
                }
                Some(role) if table == "[package]" => Some(format!(
                    "description = \"{} — {}\"",
                    toml_escaped(description),
                    lower_first(role)
                )),
                _ => None,
            }
        } else if path == inx_path() {
            let header = format!("; {}.inf - ", identity.name);
            body.starts_with(&header)
                .then(|| format!("{header}{description}"))
        } else {
            None
        };
        match replacement {
            Some(new) => {
                changed = true;
                lines.push(new + end);
            }
            None => lines.push(line.to_owned()),
        }
    }
    changed.then(|| lines.concat())
}

/// `text` with its first letter in lower case, unless it starts an acronym (`WDM`).
fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if !second.is_ascii_uppercase() => {
            first.to_ascii_lowercase().to_string() + &text[first.len_utf8()..]
        }
        _ => text.to_owned(),
    }
}

/// `text` escaped for a TOML basic string.
fn toml_escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The files of the template, relative to `root`, without build output and version control.
fn template_files(root: &Path) -> Result<Vec<PathBuf>, String> {
    const SKIPPED_DIRECTORIES: [&str; 2] = [".git", "target"];
    const SKIPPED_PATHS: [&str; 2] = ["tests/fuzz/artifacts", "tests/fuzz/coverage"];
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let directory = root.join(&relative);
        let entries = fs::read_dir(&directory)
            .map_err(|error| format!("{}: {error}", directory.display()))?;
        for entry in entries {
            let entry = entry.map_err(|error| format!("{}: {error}", directory.display()))?;
            let path = relative.join(entry.file_name());
            let kind = entry
                .file_type()
                .map_err(|error| format!("{}: {error}", path.display()))?;
            let name = entry.file_name();
            // `.git` is a file in a linked worktree, a directory elsewhere.
            if name == ".git" {
                continue;
            }
            if kind.is_dir() {
                let skipped = SKIPPED_DIRECTORIES.iter().any(|skip| name == *skip)
                    || SKIPPED_PATHS.iter().any(|skip| path == Path::new(skip));
                if !skipped {
                    pending.push(path);
                }
            } else if kind.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|component| component.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// What a derivation copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// The whole project: the timer driver under new names.
    Full,
    /// The shared crates and tools of [`BARE_SHARED`] with the one-IOCTL driver of
    /// [`BARE_OVERLAY`] in place of the timer driver.
    Bare,
}

/// The bare driver's own files, at the paths they take in a bare project: its workspace
/// manifest, README and CI script, its ABI (`driver/abi`), its logic hosted in the shell
/// (`driver/kmdf`) and its companion app (`tests/ktimer-test`).
const BARE_OVERLAY: &str = "templates/bare";

/// What a bare project takes from this one unchanged but for the names (`/`-separated;
/// a trailing `/` takes a directory): the `.sys` package and its build plan, the seam, the
/// safe kernel layer, the KMDF shell, the device identity, the simulator, the INX, the
/// Windows checks and the packaging. One copy, used by both layouts: nothing here can drift.
const BARE_SHARED: &[&str] = &[
    ".cargo/config.toml",
    ".gitignore",
    "Cargo.lock",
    "Makefile.toml",
    "rustfmt.toml",
    "docs/SIMULATOR.md",
    "driver/Cargo.toml",
    "driver/build.rs",
    "driver/ktimer.inx",
    "driver/src/",
    "driver/build-plan/",
    "driver/seam/",
    "driver/kernel/",
    "driver/shell/",
    "driver/abi/src/device.rs",
    "inf/",
    "tests/kernel-sim/",
    "tests/wdk-real-headers/",
];

/// Shared files a bare project leaves out: the seam's check of the Wine rig's binding (a
/// bare project has no Wine rig).
const BARE_LEFT_OUT: &[&str] = &["driver/seam/tests/bindings.rs"];

/// Shared files a bare project takes only up to a line: `.cargo/config.toml` without the
/// `cargo xtask` alias (a bare project has no xtask), the Windows checks' README without
/// this repository's results (they are the timer driver's).
const BARE_CUT: &[(&str, &str)] = &[
    (".cargo/config.toml", "# `cargo xtask"),
    (
        "tests/wdk-real-headers/README.md",
        "## Results in this repository",
    ),
];

/// `text` of the shared file `path` as a bare project takes it: cut before the line that
/// starts with its [`BARE_CUT`] marker, or `None` if the file is taken whole.
///
/// # Errors
///
/// The file has a cut but no line with its marker.
fn bare_text(path: &str, text: &str) -> Result<Option<String>, String> {
    let Some((_, marker)) = BARE_CUT.iter().find(|(cut, _)| *cut == path) else {
        return Ok(None);
    };
    let mut kept = String::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with(marker) {
            return Ok(Some(kept.trim_end().to_owned() + "\n"));
        }
        kept.push_str(line);
    }
    Err(format!(
        "{path}: no line starts with `{marker}`, where a bare project's copy ends"
    ))
}

/// The files a derivation in `layout` writes, as (file of the template, path in the new
/// project before renaming), both relative and `/`-separated.
fn selected_files(files: &[PathBuf], layout: Layout) -> Vec<(PathBuf, String)> {
    let all = files.iter().map(|file| (file.clone(), slash_path(file)));
    if layout == Layout::Full {
        return all.collect();
    }
    let overlay_prefix = format!("{BARE_OVERLAY}/");
    let overlay: Vec<(PathBuf, String)> = all
        .clone()
        .filter_map(|(file, path)| {
            let target = path.strip_prefix(&overlay_prefix)?.to_owned();
            Some((file, target))
        })
        .collect();
    let shared = all.filter(|(_, path)| {
        BARE_SHARED.iter().any(|taken| {
            if taken.ends_with('/') {
                path.starts_with(taken)
            } else {
                path == taken
            }
        }) && !BARE_LEFT_OUT.contains(&path.as_str())
            && !overlay.iter().any(|(_, target)| target == path)
    });
    let mut selected: Vec<(PathBuf, String)> = shared.chain(overlay.clone()).collect();
    selected.sort_by(|a, b| a.1.cmp(&b.1));
    selected
}

/// A file of the new project: where it goes and what it holds.
struct Derived {
    source: PathBuf,
    target: PathBuf,
    contents: Vec<u8>,
}

/// What is wrong with the renaming: a rule whose old text was found nowhere, or is missing
/// from a file that must hold it (`matched`: the files each rule matched; `files`: what the
/// derivation writes, by path before renaming).
fn rule_problems(
    rules: &[Rule],
    matched: &[Vec<String>],
    files: &[(PathBuf, String)],
    layout: Layout,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (rule, files_matched) in rules.iter().zip(matched) {
        // A bare project lacks some of the files a rule names (the timer service's); the
        // rule is still checked in every file it keeps.
        let expected_in: Vec<&str> = rule
            .expected_in
            .iter()
            .copied()
            .filter(|expected| {
                layout == Layout::Full || files.iter().any(|(_, target)| target == expected)
            })
            .collect();
        if files_matched.is_empty() && !expected_in.is_empty() {
            problems.push(format!(
                "the template's {} `{}` was found nowhere",
                rule.what, rule.old
            ));
        }
        for expected in &expected_in {
            if !files_matched.iter().any(|file| file == expected) {
                problems.push(format!(
                    "the template's {} `{}` is missing from {expected}",
                    rule.what, rule.old
                ));
            }
        }
    }
    problems
}

/// Derives the new project at `out` from the template at `source`. Everything is checked in
/// memory first; nothing is written unless every check passes.
fn derive(source: &Path, out: &Path, identity: &Identity, layout: Layout) -> Result<(), String> {
    if out.exists() {
        return Err(format!(
            "{} exists: refusing to overwrite it (choose a new directory)",
            out.display()
        ));
    }
    let rules = rules(identity)?;
    let files = selected_files(&template_files(source)?, layout);
    let mut matched: Vec<Vec<String>> = vec![Vec::new(); rules.len()];
    let mut described = Vec::new();
    let mut derived = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for (relative, relative_text) in &files {
        let relative_text = relative_text.clone();
        let bytes =
            fs::read(source.join(relative)).map_err(|error| format!("{relative_text}: {error}"))?;
        let contents = match String::from_utf8(bytes) {
            Ok(mut text) => {
                for (rule, files_matched) in rules.iter().zip(matched.iter_mut()) {
                    if text.contains(rule.old.as_str()) {
                        files_matched.push(relative_text.clone());
                        text = text.replace(rule.old.as_str(), &rule.new);
                    }
                }
                if layout == Layout::Bare {
                    match bare_text(&relative_text, &text) {
                        Ok(Some(cut)) => text = cut,
                        Ok(None) => {}
                        Err(problem) => problems.push(problem),
                    }
                }
                if let Some(new_text) = described_text(&relative_text, &text, identity) {
                    described.push(relative_text.clone());
                    text = new_text;
                }
                for leftover in leftovers(&text) {
                    problems.push(format!("{relative_text}: {leftover} left after renaming"));
                }
                text.into_bytes()
            }
            // Binary files (the fuzz corpus) are copied unchanged.
            Err(not_text) => not_text.into_bytes(),
        };
        let mut target_text = relative_text.clone();
        for rule in &rules {
            target_text = target_text.replace(rule.old.as_str(), &rule.new);
        }
        if !leftovers(&target_text).is_empty() {
            problems.push(format!(
                "path {relative_text}: old name left in `{target_text}`"
            ));
        }
        derived.push(Derived {
            source: relative.clone(),
            target: target_text.split('/').collect(),
            contents,
        });
    }
    for expected in [TEMPLATE.readme, TEMPLATE.main_manifest, inx_path().as_str()] {
        if !described.iter().any(|file| file == expected) {
            problems.push(format!(
                "{expected}: no place for the description (the README's `# ` title line, a \
                 `description = \"...\"` in the manifest's [package], the INX's \
                 `; <name>.inf - ` header line)"
            ));
        }
    }
    problems.extend(rule_problems(&rules, &matched, &files, layout));
    if !problems.is_empty() {
        let mut message = String::from(
            "the template does not match xtask's list of identifiers (xtask/src/main.rs, \
             TEMPLATE and rules); nothing was written:",
        );
        for problem in &problems {
            let _ = write!(message, "\n  {problem}");
        }
        return Err(message);
    }
    for file in &derived {
        let target = out.join(&file.target);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|error| format!("{}: {error}", parent.display()))?;
        }
        fs::write(&target, &file.contents)
            .map_err(|error| format!("{}: {error}", target.display()))?;
        // Keeps scripts executable.
        let permissions = fs::metadata(source.join(&file.source))
            .map_err(|error| format!("{}: {error}", file.source.display()))?
            .permissions();
        fs::set_permissions(&target, permissions)
            .map_err(|error| format!("{}: {error}", target.display()))?;
    }
    Ok(())
}

/// Brings the copy's lock files and formatting in line with its new names (package names
/// change the order of `Cargo.lock` and the length of lines). Best effort: a step that cannot
/// run (offline without a registry cache, no rustfmt) is reported with the command to run.
fn after_derive(out: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for manifest in [
        "Cargo.toml",
        "tests/wine/Cargo.toml",
        "tests/fuzz/Cargo.toml",
    ] {
        let manifest = out.join(manifest);
        if !manifest.exists() {
            continue;
        }
        // Offline first (the registry cache usually has everything); online if that fails.
        let attempts: [&[&[&str]]; 2] = [
            &[
                &["update", "--workspace", "--offline", "--quiet"],
                &["update", "--workspace", "--quiet"],
            ],
            &[&["fmt", "--all"]],
        ];
        for alternatives in attempts {
            let succeeded = alternatives.iter().any(|arguments| {
                Command::new(&cargo)
                    .args(*arguments)
                    .arg("--manifest-path")
                    .arg(&manifest)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
            });
            if !succeeded {
                let arguments = alternatives.last().copied().unwrap_or_default();
                eprintln!(
                    "xtask: note: `cargo {} --manifest-path {}` did not succeed; run it \
                     yourself",
                    arguments.join(" "),
                    manifest.display()
                );
            }
        }
    }
}

/// The bare README's placeholders for its line counts, and what each counts (`.rs` files
/// under these directories or files of the derived project, `{name}` its name): the
/// driver's own code, its app, and the template's driver code around it.
const LINE_COUNTS: [(&str, &[&str]); 3] = [
    ("{{own_lines}}", &["driver/abi", "driver/kmdf"]),
    ("{{app_lines}}", &["tests/{name}-test"]),
    (
        "{{shell_lines}}",
        &[
            "driver/shell",
            "driver/seam",
            "driver/src",
            "driver/build.rs",
            "driver/build-plan",
        ],
    ),
];

/// Lines of the `.rs` files at `path` (a file, or every file below a directory).
fn rust_lines(path: &Path) -> Result<usize, String> {
    if path.is_file() {
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            return Ok(0);
        }
        let text =
            fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
        return Ok(text.lines().count());
    }
    let mut total = 0;
    let entries = fs::read_dir(path).map_err(|error| format!("{}: {error}", path.display()))?;
    for entry in entries {
        let entry = entry.map_err(|error| format!("{}: {error}", path.display()))?;
        total += rust_lines(&entry.path())?;
    }
    Ok(total)
}

/// Writes the line counts of the bare project at `out` (named `name`) into its README, in
/// place of the [`LINE_COUNTS`] placeholders, counted from the files as written (after
/// renaming and formatting).
///
/// # Errors
///
/// A counted path is missing, or the README lacks a placeholder.
fn fill_line_counts(out: &Path, name: &str) -> Result<(), String> {
    let readme_path = out.join(TEMPLATE.readme);
    let mut readme = fs::read_to_string(&readme_path)
        .map_err(|error| format!("{}: {error}", readme_path.display()))?;
    for (placeholder, paths) in LINE_COUNTS {
        let mut lines = 0;
        for path in paths {
            let path = out.join(path.replace("{name}", name));
            if !path.exists() {
                return Err(format!(
                    "{}: missing, cannot count its lines",
                    path.display()
                ));
            }
            lines += rust_lines(&path)?;
        }
        if !readme.contains(placeholder) {
            return Err(format!(
                "{}: no {placeholder} to fill",
                readme_path.display()
            ));
        }
        readme = readme.replace(placeholder, &lines.to_string());
    }
    fs::write(&readme_path, readme).map_err(|error| format!("{}: {error}", readme_path.display()))
}

fn print_summary(out: &Path, identity: &Identity) {
    let upper = identity.name.to_ascii_uppercase();
    println!("derived {} into {}", identity.name, out.display());
    println!("  description      {}", identity.description);
    println!(
        "  packages         {0}, {0}-abi, {0}-test, ...",
        identity.name
    );
    println!(
        "  device           \\Device\\{0}, \\\\.\\{0}, hardware ID Root\\{0}",
        identity.display
    );
    println!(
        "  interface GUID   {{{}}}",
        guid_text(identity.interface_guid)
    );
    println!(
        "  IOCTL            FILE_DEVICE_{upper} = 0x{:04X}, IOCTL_{upper}_*",
        identity.device_type
    );
    println!("  pool tags        {0}sv, {0}wf", identity.pool_tag_prefix);
    println!("  INX              driver/{}.inx", identity.name);
    println!(
        "next: cd {} && cargo test --workspace && cargo run --release -p {}-test -- --sim",
        out.display(),
        identity.name
    );
}

#[cfg(test)]
mod tests {
    //! The tests name nothing after the template literally unless the derivation renames it
    //! consistently: a derived project runs these tests against its own names.

    use super::*;

    /// A name for the new driver that cannot clash with the template's.
    fn test_name() -> String {
        ["zqdrv", "wvdrv"]
            .into_iter()
            .find(|name| !name.contains(TEMPLATE.name) && !TEMPLATE.name.contains(name))
            .unwrap_or("zqdrv")
            .to_owned()
    }

    /// The test driver's description: a quote in it must come out escaped in TOML.
    const DESCRIPTION: &str = "Counts \"test\" ticks for user mode";

    fn test_identity() -> Identity {
        let mut identity = identity(
            test_name(),
            None,
            None,
            Some("0x9A01"),
            Some("{0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0}"),
        )
        .unwrap();
        identity.description = DESCRIPTION.to_owned();
        identity
    }

    fn derive_args(extra: &[&str]) -> Vec<String> {
        let mut args = vec!["--name".to_owned(), test_name(), "--out".into(), "x".into()];
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        args
    }

    #[test]
    fn the_description_is_given_or_asked_on_a_terminal_or_else_required() {
        let given = derive_args(&["--description", "  Given on the command line "]);
        for terminal in [false, true] {
            let (identity, _) =
                parse_derive(&given, terminal, || panic!("asked although given")).unwrap();
            assert_eq!(identity.description, "Given on the command line");
        }
        let (identity, out) = parse_derive(&derive_args(&[]), true, || {
            Ok("Typed at the prompt\n".into())
        })
        .unwrap();
        assert_eq!(identity.description, "Typed at the prompt");
        assert_eq!(out, PathBuf::from("x"));
        let error = parse_derive(&derive_args(&[]), false, || {
            panic!("asked without a terminal")
        })
        .unwrap_err();
        assert!(
            error.contains("--description") && error.contains("terminal"),
            "{error}"
        );
        // An invalid name is reported before anything is asked.
        let mut bad_name = derive_args(&[]);
        bad_name[1] = "X".into();
        assert!(parse_derive(&bad_name, true, || panic!("asked for an invalid name")).is_err());
        let error = parse_derive(&derive_args(&[]), true, || Ok("\n".into())).unwrap_err();
        assert!(error.contains("--description"), "{error}");
    }

    #[test]
    fn bad_descriptions_are_refused() {
        assert_eq!(checked_description(" A driver. ").unwrap(), "A driver.");
        for bad in [
            String::new(),
            "   ".to_owned(),
            "two\nlines".to_owned(),
            "a\ttab".to_owned(),
            "x".repeat(201),
            format!("a better {} driver", TEMPLATE.display),
            format!("like {}", TEMPLATE.name.to_ascii_uppercase()),
        ] {
            assert!(checked_description(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_description_replaces_the_template_one_where_it_belongs() {
        let identity = test_identity();
        let name = &identity.name;
        let escaped = r#"Counts \"test\" ticks for user mode"#;
        let readme = format!("# {name} — old words\r\n\n# {name} — a later heading\n");
        assert_eq!(
            described_text(TEMPLATE.readme, &readme, &identity).unwrap(),
            format!("# {name} — {DESCRIPTION}\r\n\n# {name} — a later heading\n")
        );
        let manifest = "[package]\nname = \"p\"\ndescription = \"The old role\"\n\n\
                        [dependencies]\ndescription = \"not a package's\"\n";
        assert_eq!(
            described_text(TEMPLATE.main_manifest, manifest, &identity).unwrap(),
            format!(
                "[package]\nname = \"p\"\ndescription = \"{escaped}\"\n\n\
                 [dependencies]\ndescription = \"not a package's\"\n"
            )
        );
        assert_eq!(
            described_text("tests/other/Cargo.toml", manifest, &identity).unwrap(),
            format!(
                "[package]\nname = \"p\"\ndescription = \"{escaped} — the old role\"\n\n\
                 [dependencies]\ndescription = \"not a package's\"\n"
            )
        );
        let acronym = "[package]\ndescription = \"WDM front end\"\n";
        assert_eq!(
            described_text("rig/Cargo.toml", acronym, &identity).unwrap(),
            format!("[package]\ndescription = \"{escaped} — WDM front end\"\n")
        );
        let inx = format!(";\n; {name}.inf - old words.\n;\n");
        assert_eq!(
            described_text(&inx_path(), &inx, &identity).unwrap(),
            format!(";\n; {name}.inf - {DESCRIPTION}\n;\n")
        );
        assert_eq!(described_text("docs/NOTES.md", &readme, &identity), None);
        assert_eq!(
            described_text("Cargo.toml", "[workspace]\n", &identity),
            None
        );
    }

    #[test]
    fn defaults_follow_the_name() {
        let identity = test_identity();
        assert_eq!(identity.display, capitalized(&test_name()));
        assert_eq!(identity.pool_tag_prefix, identity.display[..2]);
        assert_eq!(identity.device_type, 0x9A01);
        assert_eq!(
            guid_text(identity.interface_guid),
            "0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0"
        );
    }

    #[test]
    fn bad_identities_are_refused() {
        let refused = |name: &str, display: Option<&str>, device_type: Option<&str>| {
            identity(
                name.to_owned(),
                display.map(str::to_owned),
                None,
                device_type,
                None,
            )
            .is_err()
        };
        let name = test_name();
        assert!(refused(&format!("{name}-x"), None, None));
        assert!(refused(&format!("9{name}"), None, None));
        assert!(refused(&name.to_ascii_uppercase(), None, None));
        assert!(refused("x", None, None));
        assert!(refused(&format!("my{}", TEMPLATE.name), None, None));
        assert!(refused(
            &name,
            Some(&format!("{}2", TEMPLATE.display)),
            None
        ));
        assert!(refused(&name, None, Some("0x1234")));
        assert!(refused(&name, None, Some(TEMPLATE.device_type)));
        let own_guid = identity(
            name.clone(),
            None,
            None,
            None,
            Some(TEMPLATE.interface_guid),
        );
        assert!(own_guid.is_err());
        assert!(!refused(
            &format!("{name}2"),
            Some("MyDriver"),
            Some("0xFFFF")
        ));
    }

    #[test]
    fn guid_forms() {
        let guid = parse_guid("{0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0}").unwrap();
        assert_eq!(guid_text(guid), "0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0");
        assert_eq!(
            hex_literal(guid, 32),
            "0x0F1E_2D3C_4B5A_4978_8695_A4B3_C2D1_E0F0"
        );
        assert_eq!(hex_literal(guid >> 96, 8), "0x0F1E_2D3C");
        assert!(parse_guid("0F1E2D3C-4B5A-4978-8695").is_err());
        assert!(parse_guid("GF1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0").is_err());
    }

    #[test]
    fn random_guids_are_version_4_and_differ() {
        let (first, second) = (random_guid(), random_guid());
        assert_ne!(first, second);
        for guid in [first, second] {
            assert_eq!((guid >> 76) & 0xF, 4, "{}", guid_text(guid));
            assert_eq!((guid >> 62) & 0b11, 0b10, "{}", guid_text(guid));
        }
        let old = parse_device_type(TEMPLATE.device_type).unwrap();
        let device_type = random_device_type(old);
        assert!(device_type >= 0x8000 && device_type != old);
    }

    fn renamed(text: &str, identity: &Identity) -> String {
        rules(identity)
            .unwrap()
            .iter()
            .fold(text.to_owned(), |text, rule| {
                text.replace(rule.old.as_str(), &rule.new)
            })
    }

    /// Text with every form of every template identifier, and the kernel's own names.
    fn template_text() -> String {
        let guid = parse_guid(TEMPLATE.interface_guid).unwrap();
        let (name, display, upper) = (
            TEMPLATE.name,
            TEMPLATE.display,
            TEMPLATE.name.to_ascii_uppercase(),
        );
        format!(
            "use {name}_abi::ioctl::{{FILE_DEVICE_{upper}, IOCTL_{upper}_WAIT}};\n\
             const NAME: &str = \"\\\\Device\\\\{display}\"; // Root\\{display}, {name}.sys\n\
             const GUID: u128 = {};\n// {{{}}}, data1 {}\n\
             const CODE: u32 = {dt}_6000; ctl_code({dt}, 0x800, 0, 0);\n\
             const TAGS: [&[u8; 4]; 2] = [b\"{}\", b\"{}\"]; // {upper}_FUZZ_REPLAY\n\
             fn dpc(timer: PKTIMER, object: &KTIMER) {{}} // KTIMERs, _KTIMER, PRKTIMER\n",
            hex_literal(guid, 32),
            guid_text(guid),
            hex_literal(guid >> 96, 8),
            TEMPLATE.pool_tags[0],
            TEMPLATE.pool_tags[1],
            dt = TEMPLATE.device_type,
        )
    }

    #[test]
    fn every_template_name_is_renamed_and_kernel_names_stay() {
        let identity = test_identity();
        let (name, display) = (&identity.name, &identity.display);
        let upper = name.to_ascii_uppercase();
        let prefix = &identity.pool_tag_prefix;
        let text = renamed(&template_text(), &identity);
        assert_eq!(leftovers(&text), Vec::<String>::new(), "{text}");
        let expected = format!(
            "use {name}_abi::ioctl::{{FILE_DEVICE_{upper}, IOCTL_{upper}_WAIT}};\n\
             const NAME: &str = \"\\\\Device\\\\{display}\"; // Root\\{display}, {name}.sys\n\
             const GUID: u128 = 0x0F1E_2D3C_4B5A_4978_8695_A4B3_C2D1_E0F0;\n\
             // {{0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F0}}, data1 0x0F1E_2D3C\n\
             const CODE: u32 = 0x9A01_6000; ctl_code(0x9A01, 0x800, 0, 0);\n\
             const TAGS: [&[u8; 4]; 2] = [b\"{prefix}sv\", b\"{prefix}wf\"]; // {upper}_FUZZ_REPLAY\n\
             fn dpc(timer: PKTIMER, object: &KTIMER) {{}} // KTIMERs, _KTIMER, PRKTIMER\n"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn leftovers_are_found() {
        let upper = TEMPLATE.name.to_ascii_uppercase();
        assert!(leftovers(&template_text()).len() > 6);
        assert_eq!(
            leftovers(&format!("mod {};", TEMPLATE.name)),
            [format!("`{}`", TEMPLATE.name)]
        );
        assert_eq!(
            leftovers(&format!("{upper}_SPECIAL")),
            [format!("`{upper}_SPECIAL`")]
        );
        assert_eq!(
            leftovers(&format!(
                "{}0000",
                TEMPLATE.device_type.to_ascii_lowercase()
            )),
            [format!(
                "the template's device type (`{}`)",
                TEMPLATE.device_type
            )]
        );
        assert_eq!(
            leftovers(&TEMPLATE.interface_guid.to_ascii_lowercase()),
            [format!(
                "the template's interface GUID (`{}`)",
                TEMPLATE.interface_guid
            )]
        );
        assert!(leftovers("KTIMER PKTIMER _KTIMER PRKTIMER KTIMERs").is_empty());
    }

    #[test]
    fn leftovers_are_found_in_any_letter_case() {
        let upper = TEMPLATE.name.to_ascii_uppercase();
        // A marker joined to the kernel's name by `-` is not the kernel's name.
        assert_eq!(
            leftovers(&format!("echo {upper}-RIG done")),
            [format!("`{upper}-RIG`")]
        );
        let mixed: String = TEMPLATE
            .name
            .chars()
            .enumerate()
            .map(|(index, c)| {
                if index % 2 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        assert_eq!(leftovers(&format!("{mixed}.")), [format!("`{mixed}`")]);
        let capital = capitalized(TEMPLATE.name);
        assert_eq!(
            leftovers(&format!("the {capital} driver")),
            [format!("`{capital}`")]
        );
        let kernel = TEMPLATE.kernel_names[0];
        assert!(leftovers(&format!("{kernel}.Header and {kernel}/KDPC")).is_empty());
    }

    /// A miniature template with every identifier where the list expects it.
    fn write_template(root: &Path) {
        let (name, display, upper) = (
            TEMPLATE.name,
            TEMPLATE.display,
            TEMPLATE.name.to_ascii_uppercase(),
        );
        let guid = parse_guid(TEMPLATE.interface_guid).unwrap();
        let files = [
            ("Cargo.toml".to_owned(), "[workspace]\n".to_owned()),
            (
                TEMPLATE.readme.to_owned(),
                format!("# {name} — the template's words\n\nMore.\n"),
            ),
            (
                TEMPLATE.main_manifest.to_owned(),
                format!("[package]\nname = \"{name}\"\ndescription = \"The template's words\"\n"),
            ),
            (
                "tests/wine/run.sh".to_owned(),
                format!("echo {upper}-RIG start\nsed -n 's/^{upper}-RIG //p'\n"),
            ),
            (
                "driver/abi/src/device.rs".to_owned(),
                format!(
                    "// {{{}}}\nconst G: u128 = {};\nconst N: &str = \"{display}\";\n",
                    guid_text(guid),
                    hex_literal(guid, 32)
                ),
            ),
            (
                "driver/abi/src/ioctl.rs".to_owned(),
                format!(
                    "const FILE_DEVICE_{upper}: u32 = {};\nconst IOCTL_{upper}_WAIT: u32 = 1;\n",
                    TEMPLATE.device_type
                ),
            ),
            (
                "driver/service/src/config.rs".to_owned(),
                format!("const T: [u8; 4] = *b\"{}\";\n", TEMPLATE.pool_tags[0]),
            ),
            (
                "driver/kmdf/src/timer_logic.rs".to_owned(),
                format!("const T: [u8; 4] = *b\"{}\";\n", TEMPLATE.pool_tags[1]),
            ),
            (
                format!("driver/{name}.inx"),
                format!(
                    ";\n; {name}.inf - the template's words.\n[{display}_Device]\n{name}.sys\n"
                ),
            ),
            (
                format!("tests/{name}-test/Cargo.toml"),
                format!(
                    "[package]\nname = \"{name}-test\"\ndescription = \"Test app of the {name} \
                     driver\"\n"
                ),
            ),
        ];
        for (path, text) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        fs::create_dir_all(root.join("target/debug")).unwrap();
        fs::write(root.join("target/debug/build-output"), b"x").unwrap();
    }

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn a_bare_selection_takes_the_shared_files_and_the_overlay_in_their_place() {
        let files = paths(&[
            "Cargo.toml",
            "README.md",
            "driver/abi/src/device.rs",
            "driver/abi/src/ioctl.rs",
            "driver/kernel/src/timer.rs",
            "driver/seam/src/lib.rs",
            "driver/seam/tests/bindings.rs",
            "driver/service/src/lib.rs",
            "driver/shell/src/lib.rs",
            "templates/bare/Cargo.toml",
            "templates/bare/README.md",
            "templates/bare/driver/abi/src/ioctl.rs",
            "tests/wine/run.sh",
        ]);
        let bare: Vec<(String, String)> = selected_files(&files, Layout::Bare)
            .into_iter()
            .map(|(file, target)| (slash_path(&file), target))
            .collect();
        let pair = |file: &str, target: &str| (file.to_owned(), target.to_owned());
        assert_eq!(
            bare,
            [
                pair("templates/bare/Cargo.toml", "Cargo.toml"),
                pair("templates/bare/README.md", "README.md"),
                pair("driver/abi/src/device.rs", "driver/abi/src/device.rs"),
                pair(
                    "templates/bare/driver/abi/src/ioctl.rs",
                    "driver/abi/src/ioctl.rs"
                ),
                pair("driver/kernel/src/timer.rs", "driver/kernel/src/timer.rs"),
                pair("driver/seam/src/lib.rs", "driver/seam/src/lib.rs"),
                pair("driver/shell/src/lib.rs", "driver/shell/src/lib.rs"),
            ]
        );
        let full = selected_files(&files, Layout::Full);
        assert_eq!(full.len(), files.len(), "the full layout takes everything");
        assert!(
            full.iter()
                .all(|(file, target)| slash_path(file) == *target)
        );
    }

    #[test]
    fn a_bare_copy_is_cut_at_its_marker_or_refused_without_one() {
        let config = "[alias]\nx = 1\n\n# `cargo xtask <command>`: ...\nxtask = \"run\"\n";
        assert_eq!(
            bare_text(".cargo/config.toml", config),
            Ok(Some("[alias]\nx = 1\n".to_owned()))
        );
        assert_eq!(bare_text("README.md", config), Ok(None));
        let error = bare_text(".cargo/config.toml", "[alias]\n").unwrap_err();
        assert!(error.contains("no line starts with"), "{error}");
    }

    /// The sections of a manifest, by header, in order, each with its lines (blank lines
    /// and comments dropped).
    fn manifest_sections(text: &str) -> Vec<(String, Vec<String>)> {
        let mut sections: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                sections.push((line.to_owned(), Vec::new()));
            } else if let Some((_, lines)) = sections.last_mut() {
                lines.push(line.to_owned());
            }
        }
        sections
    }

    /// The bare project's manifest is its own file (its members differ), so what it shares
    /// with this one is checked here: every section but the member list and the dependency
    /// table is identical, and every dependency both name has the same requirement.
    #[test]
    fn the_bare_manifest_keeps_the_template_settings() {
        let root = template_root().unwrap();
        let read = |path: &str| fs::read_to_string(root.join(path)).unwrap();
        let template = manifest_sections(&read("Cargo.toml"));
        let bare = manifest_sections(&read(&format!("{BARE_OVERLAY}/Cargo.toml")));
        let section = |sections: &[(String, Vec<String>)], header: &str| {
            sections
                .iter()
                .find(|(name, _)| name == header)
                .map(|(_, lines)| lines.clone())
        };
        for (header, lines) in &template {
            if header.is_empty() || header == "[workspace]" {
                continue;
            }
            let bare_lines = section(&bare, header)
                .unwrap_or_else(|| panic!("the bare manifest has no {header}"));
            if header == "[workspace.dependencies]" {
                let key = |line: &String| line.split('=').next().unwrap_or("").trim().to_owned();
                for line in &bare_lines {
                    if let Some(same) = lines.iter().find(|other| key(other) == key(line)) {
                        assert_eq!(line, same, "a dependency both manifests name");
                    }
                }
            } else {
                assert_eq!(&bare_lines, lines, "{header}");
            }
        }
    }

    /// What the bare layout takes exists here, and what it makes carries no timer service:
    /// no file of it, no dependency on it, no `use` of it.
    #[test]
    fn the_bare_layout_matches_this_repository_and_leaves_the_timer_service_out() {
        let root = template_root().unwrap();
        for shared in BARE_SHARED.iter().chain(BARE_LEFT_OUT) {
            assert!(
                root.join(shared).exists(),
                "{shared} is gone: update BARE_SHARED"
            );
        }
        let selected = selected_files(&template_files(&root).unwrap(), Layout::Bare);
        for required in [
            "Cargo.toml",
            "README.md",
            ".ci/run",
            "driver/abi/Cargo.toml",
            "driver/kmdf/Cargo.toml",
            "tests/ktimer-test/Cargo.toml",
        ] {
            let from_overlay = selected.iter().any(|(file, target)| {
                target == required && slash_path(file).starts_with(BARE_OVERLAY)
            });
            assert!(from_overlay, "the bare overlay has no {required}");
        }
        let service_package = format!("{}-service", TEMPLATE.name);
        let service_crate = format!("{}_service", TEMPLATE.name);
        for (file, target) in &selected {
            assert!(
                !target.starts_with("driver/service/") && !target.starts_with("tests/wine/"),
                "{target}"
            );
            // Code and manifests only: prose may name the template's crates.
            let extension = Path::new(target).extension().and_then(|e| e.to_str());
            if extension != Some("rs") && !target.ends_with("Cargo.toml") {
                continue;
            }
            let Ok(text) = fs::read_to_string(root.join(file)) else {
                continue;
            };
            let code_lines = text.lines().map(str::trim).filter(|line| {
                !line.starts_with("//") && !line.starts_with('#') && !line.starts_with("* ")
            });
            for line in code_lines {
                assert!(
                    !line.contains(&service_crate) && !line.contains(&service_package),
                    "{target} uses the timer service: {line}"
                );
            }
        }
    }

    #[test]
    fn a_bare_readme_gets_the_line_counts_of_the_files_as_written() {
        let out = scratch("counts");
        let write = |path: &str, text: &str| {
            let path = out.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        write("driver/abi/src/lib.rs", "a\nb\n");
        write("driver/abi/Cargo.toml", "not counted\n");
        write("driver/kmdf/tests/t.rs", "c\n");
        write("tests/zq-test/src/main.rs", "d\ne\nf\ng\n");
        for shared in [
            "driver/shell/src/lib.rs",
            "driver/seam/src/lib.rs",
            "driver/src/lib.rs",
        ] {
            write(shared, "x\n");
        }
        write("driver/build.rs", "y\ny\n");
        write("driver/build-plan/src/lib.rs", "z\n");
        write(
            TEMPLATE.readme,
            "{{own_lines}} own, {{app_lines}} app, {{shell_lines}} shell\n",
        );
        fill_line_counts(&out, "zq").unwrap();
        let readme = fs::read_to_string(out.join(TEMPLATE.readme)).unwrap();
        assert_eq!(readme, "3 own, 4 app, 6 shell\n");
        // Filled once: a second run finds no placeholder and says so.
        let error = fill_line_counts(&out, "zq").unwrap_err();
        assert!(error.contains("no {{own_lines}} to fill"), "{error}");
        fs::remove_dir_all(&out).unwrap();
    }

    #[test]
    fn the_bare_readme_has_each_line_count_placeholder_once() {
        let root = template_root().unwrap();
        let readme = fs::read_to_string(root.join(BARE_OVERLAY).join("README.md")).unwrap();
        for (placeholder, _) in LINE_COUNTS {
            assert_eq!(readme.matches(placeholder).count(), 1, "{placeholder}");
        }
    }

    fn scratch(test: &str) -> PathBuf {
        let directory = env::temp_dir().join(format!("xtask-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&directory);
        directory
    }

    #[test]
    fn derives_a_miniature_template_and_refuses_to_overwrite() {
        let directory = scratch("derive");
        let (template, out) = (directory.join("template"), directory.join("out"));
        write_template(&template);
        let identity = test_identity();
        derive(&template, &out, &identity, Layout::Full).unwrap();
        let name = &identity.name;
        let inx = fs::read_to_string(out.join(format!("driver/{name}.inx"))).unwrap();
        assert_eq!(
            inx,
            format!(
                ";\n; {name}.inf - {DESCRIPTION}\n[{}_Device]\n{name}.sys\n",
                identity.display
            )
        );
        let escaped = toml_escaped(DESCRIPTION);
        let app = fs::read_to_string(out.join(format!("tests/{name}-test/Cargo.toml"))).unwrap();
        assert_eq!(
            app,
            format!(
                "[package]\nname = \"{name}-test\"\ndescription = \"{escaped} — test app of \
                 the {name} driver\"\n"
            )
        );
        let driver = fs::read_to_string(out.join(TEMPLATE.main_manifest)).unwrap();
        assert!(
            driver.ends_with(&format!("description = \"{escaped}\"\n")),
            "{driver}"
        );
        let readme = fs::read_to_string(out.join(TEMPLATE.readme)).unwrap();
        assert_eq!(readme, format!("# {name} — {DESCRIPTION}\n\nMore.\n"));
        let rig = fs::read_to_string(out.join("tests/wine/run.sh")).unwrap();
        let upper = name.to_ascii_uppercase();
        assert!(rig.contains(&format!("echo {upper}-RIG start")), "{rig}");
        assert!(!out.join("target").exists(), "build output is not copied");
        let again = derive(&template, &out, &identity, Layout::Full).unwrap_err();
        assert!(again.contains("refusing to overwrite"), "{again}");
        fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn a_missing_identifier_stops_the_derivation_before_writing() {
        let directory = scratch("missing");
        let (template, out) = (directory.join("template"), directory.join("out"));
        write_template(&template);
        fs::write(
            template.join("driver/kmdf/src/timer_logic.rs"),
            "// no tag here\n",
        )
        .unwrap();
        let error = derive(&template, &out, &test_identity(), Layout::Full).unwrap_err();
        let expected = format!(
            "`{}` is missing from driver/kmdf/src/timer_logic.rs",
            TEMPLATE.pool_tags[1]
        );
        assert!(error.contains(&expected), "{error}");
        assert!(!out.exists(), "nothing is written");
        fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn a_template_without_a_place_for_the_description_stops_the_derivation() {
        let directory = scratch("undescribed");
        let (template, out) = (directory.join("template"), directory.join("out"));
        write_template(&template);
        fs::write(template.join(TEMPLATE.readme), "No title line.\n").unwrap();
        let error = derive(&template, &out, &test_identity(), Layout::Full).unwrap_err();
        let expected = format!("{}: no place for the description", TEMPLATE.readme);
        assert!(error.contains(&expected), "{error}");
        assert!(!out.exists(), "nothing is written");
        fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn a_surviving_old_name_stops_the_derivation_before_writing() {
        let directory = scratch("leftover");
        let (template, out) = (directory.join("template"), directory.join("out"));
        write_template(&template);
        let upper = TEMPLATE.name.to_ascii_uppercase();
        fs::write(template.join("NOTES.md"), format!("code {upper}_SPECIAL\n")).unwrap();
        let error = derive(&template, &out, &test_identity(), Layout::Full).unwrap_err();
        let expected = format!("NOTES.md: `{upper}_SPECIAL` left after renaming");
        assert!(error.contains(&expected), "{error}");
        assert!(!out.exists(), "nothing is written");
        fs::remove_dir_all(&directory).unwrap();
    }
}
