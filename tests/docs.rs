//! The documentation checked against the binary and against itself. No
//! FUSE mount is needed: the binary only prints its help and refuses bad
//! arguments.
//!
//! README.md lists every option once, in two tables whose first column
//! holds the names in backticks, separated by commas:
//!
//! - under the heading `### Command-line options`: flags such as `-f`,
//!   `--foreground`; a flag that takes a value has the value's name in the
//!   same backticks: `--paths FILE`, `-o OPT[,OPT...]`;
//! - under the heading `### Mount options (`-o`)`: `name`, or `name=VALUE`
//!   for an option that takes a value.
//!
//! Both tables must list exactly what `triefs --help` lists, names and
//! whether each takes a value. Besides: every documented mount option is
//! accepted by the option parser, the subcommands' flags and commands are
//! in the README's usage block, the two commands for newcomers are there
//! in their own blocks, every relative link in README.md and docs/*.md
//! points at an existing file (and heading), and README.md stays a page
//! for users: at most 12,000 bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const README_MAX_BYTES: usize = 12_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn readme() -> String {
    read(&root().join("README.md"))
}

/// `triefs ARGS...`: its stdout, which must be there with exit code 0.
fn triefs_stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_triefs"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("running triefs");
    assert!(
        out.status.success(),
        "triefs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The lines of the help section that starts with the line `title`, up to
/// the next line that is not indented (the next section).
fn help_section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = help.lines().skip_while(|l| l.trim_end() != title);
    assert!(
        lines.next().is_some(),
        "no section {title:?} in the help:\n{help}"
    );
    lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The name column of a help line: up to two spaces in a row.
fn name_column(line: &str) -> &str {
    let t = line.trim();
    t.split("  ").next().unwrap_or(t)
}

/// Flags of an `Options:` section of clap's help (`-f, --foreground`,
/// `--paths <FILE>`, `-v, --verbose...`), each with whether it takes a
/// value. Descriptions are indented further than the flags, which start
/// within the first eight columns.
fn help_flags(help: &str) -> BTreeMap<String, bool> {
    let mut flags = BTreeMap::new();
    for line in help_section(help, "Options:") {
        if indent(line) > 8 || !line.trim_start().starts_with('-') {
            continue;
        }
        let names = name_column(line);
        let takes_value = names.contains('<');
        for item in names.split(", ") {
            let flag = item
                .split([' ', '<', '='])
                .next()
                .unwrap()
                .trim_end_matches("...");
            assert!(flag.starts_with('-'), "odd flag {item:?} in {line:?}");
            flags.insert(flag.to_string(), takes_value);
        }
    }
    flags
}

/// Mount options of the help's `MOUNT OPTIONS (-o):` section: entries start
/// two columns in (`  mode=OCTAL, uid=N, gid=N  permissions ...`), their
/// descriptions and notes further in. Name → takes a value.
fn help_mount_options(help: &str) -> BTreeMap<String, bool> {
    let mut opts = BTreeMap::new();
    for line in help_section(help, "MOUNT OPTIONS (-o):") {
        if line.trim().is_empty() || indent(line) != 2 {
            continue;
        }
        for item in name_column(line).split(',') {
            let item = item.trim();
            // `name[=VALUE]`: the value is optional; counted as taking one.
            let item = item.replacen("[=", "=", 1);
            let item = item.as_str();
            let (name, takes_value) = match item.split_once('=') {
                Some((n, _)) => (n, true),
                None => (item, false),
            };
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "odd mount option {item:?} in the help line {line:?}"
            );
            opts.insert(name.to_string(), takes_value);
        }
    }
    opts
}

/// The backticked items of the first column of the table that follows the
/// heading line `heading` in `md`.
fn table_first_column(md: &str, heading: &str) -> Vec<String> {
    let mut lines = md.lines().skip_while(|l| l.trim_end() != heading);
    assert!(lines.next().is_some(), "README has no heading {heading:?}");
    let rows: Vec<&str> = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(
        rows.len() > 2 && rows[1].starts_with("|--"),
        "no table under {heading:?}"
    );
    let mut items = Vec::new();
    for row in &rows[2..] {
        let cell = row.split('|').nth(1).unwrap();
        let spans: Vec<&str> = cell.split('`').skip(1).step_by(2).collect();
        assert!(
            !spans.is_empty(),
            "no `name` in the first column of {row:?}"
        );
        items.extend(spans.iter().map(|s| s.to_string()));
    }
    items
}

fn readme_flags(md: &str) -> BTreeMap<String, bool> {
    let mut flags = BTreeMap::new();
    for item in table_first_column(md, "### Command-line options") {
        let mut words = item.split_whitespace();
        let flag = words.next().unwrap_or_default();
        assert!(
            flag.starts_with('-'),
            "`{item}` in the command-line options table is not a flag"
        );
        let old = flags.insert(flag.to_string(), words.next().is_some());
        assert!(old.is_none(), "{flag} is listed twice in the README");
    }
    flags
}

fn readme_mount_options(md: &str) -> BTreeMap<String, bool> {
    let mut opts = BTreeMap::new();
    for item in table_first_column(md, "### Mount options (`-o`)") {
        // `name[=VALUE]`: the value is optional; counted as taking one.
        let item = item.replacen("[=", "=", 1);
        let (name, takes_value) = match item.split_once('=') {
            Some((n, _)) => (n.to_string(), true),
            None => (item.clone(), false),
        };
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "`{item}` in the mount options table is not an option name"
        );
        let old = opts.insert(name, takes_value);
        assert!(old.is_none(), "`{item}` is listed twice in the README");
    }
    opts
}

/// Both ways: what one side lists and the other does not, and options whose
/// value-taking differs.
fn assert_same(what: &str, readme: &BTreeMap<String, bool>, help: &BTreeMap<String, bool>) {
    let only_readme: Vec<_> = readme.keys().filter(|k| !help.contains_key(*k)).collect();
    let only_help: Vec<_> = help.keys().filter(|k| !readme.contains_key(*k)).collect();
    let value_differs: Vec<_> = readme
        .iter()
        .filter(|(k, v)| help.get(*k).is_some_and(|h| h != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        only_readme.is_empty() && only_help.is_empty() && value_differs.is_empty(),
        "{what}: in README.md but not in `triefs --help`: {only_readme:?}; \
         in `triefs --help` but not in README.md: {only_help:?}; \
         taking a value in one but not the other: {value_differs:?}"
    );
}

#[test]
fn readme_command_line_options_match_help() {
    let help = help_flags(&triefs_stdout(&["--help"]));
    // The parser must see the whole list, not an empty one.
    for f in ["-f", "--foreground", "--paths", "-o", "--image", "-h", "-V"] {
        assert!(help.contains_key(f), "{f} not found in the help: {help:?}");
    }
    assert_eq!(help.get("--paths"), Some(&true));
    assert_eq!(help.get("-f"), Some(&false));
    assert_same("command-line options", &readme_flags(&readme()), &help);
}

#[test]
fn readme_mount_options_match_help() {
    let help = help_mount_options(&triefs_stdout(&["--help"]));
    for o in ["ro", "allow_other", "size", "uid", "gid", "dirsync"] {
        assert!(help.contains_key(o), "{o} not found in the help: {help:?}");
    }
    assert_eq!(help.get("size"), Some(&true));
    assert_eq!(help.get("ro"), Some(&false));
    assert_same("mount options", &readme_mount_options(&readme()), &help);
}

/// Each documented option goes through the real parser: followed by an
/// unknown option, the error must name that unknown one, so the documented
/// one (with a sample value when it takes one) was accepted.
#[test]
fn readme_mount_options_are_accepted() {
    const MARK: &str = "docs_test_no_such_option";
    let md = readme();
    for item in table_first_column(&md, "### Mount options (`-o`)") {
        // `name[=VALUE]`: both forms must be accepted.
        if let Some((name, _)) = item.split_once("[=") {
            let bare = Command::new(env!("CARGO_BIN_EXE_triefs"))
                .args([
                    "-o",
                    &format!("{name},{MARK}"),
                    "/nonexistent/triefs-docs-test",
                ])
                .env_remove("RUST_LOG")
                .output()
                .expect("running triefs");
            let err = String::from_utf8_lossy(&bare.stderr);
            assert!(
                err.contains(&format!("unknown mount option '{MARK}'")),
                "-o {name} (documented as `{item}`) is refused: {err}"
            );
        }
        let item = item
            .replacen("[=", "=", 1)
            .trim_end_matches(']')
            .to_string();
        let opt = match item.split_once('=') {
            Some((name, "OCTAL")) => format!("{name}=755"),
            Some((name, v)) if v.starts_with('N') => format!("{name}=1"),
            Some((name, _)) => format!("{name}=x"),
            None => item.clone(),
        };
        let out = Command::new(env!("CARGO_BIN_EXE_triefs"))
            .args([
                "-o",
                &format!("{opt},{MARK}"),
                "/nonexistent/triefs-docs-test",
            ])
            .env_remove("RUST_LOG")
            .output()
            .expect("running triefs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "-o {opt}: {err}");
        assert!(
            err.contains(&format!("unknown mount option '{MARK}'")),
            "-o {opt} (documented as `{item}`) is refused: {err}"
        );
    }
}

/// The fenced code blocks of `md`: (info string, body).
fn code_blocks(md: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in md.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().unwrap()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block");
    blocks
}

/// The subcommands' own flags and commands appear in the README's usage.
#[test]
fn readme_usage_names_the_subcommands() {
    let md = readme();
    let usage = md
        .split("## Usage")
        .nth(1)
        .map(code_blocks)
        .and_then(|b| b.into_iter().next())
        .expect("a code block under ## Usage")
        .1;
    let words: BTreeSet<&str> = usage
        .split(|c: char| c.is_whitespace() || "[]|".contains(c))
        .collect();
    let ls = help_flags(&triefs_stdout(&["ls-prefix", "--help"]));
    assert!(ls.contains_key("-U"), "ls-prefix help: {ls:?}");
    for flag in ls.keys().filter(|f| f.len() == 2 && *f != "-h") {
        assert!(
            words.contains(flag.as_str()),
            "ls-prefix {flag} not in the usage: {usage}"
        );
    }
    let image = triefs_stdout(&["image", "--help"]);
    let commands: Vec<&str> = help_section(&image, "Commands:")
        .into_iter()
        .filter(|l| indent(l) == 2)
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 3, "image commands: {commands:?}");
    for c in commands {
        assert!(
            words.contains(c),
            "`triefs image {c}` not in the usage: {usage}"
        );
    }
}

/// The install command and the test command (which CI runs exactly as
/// written in README.md) each in a ```sh block of their own.
#[test]
fn readme_has_the_two_newcomer_commands() {
    let blocks = code_blocks(&readme());
    for cmd in [
        "scripts/install.sh && mkdir -p /tmp/scratch && triefs /tmp/scratch",
        "scripts/test.sh",
    ] {
        assert!(
            blocks
                .iter()
                .any(|(info, body)| info == "sh" && body.trim() == cmd),
            "README.md has no ```sh block holding exactly `{cmd}`"
        );
    }
}

#[test]
fn readme_is_a_page_for_users() {
    let len = readme().len();
    assert!(
        len <= README_MAX_BYTES,
        "README.md is {len} bytes, more than {README_MAX_BYTES}: move details to docs/"
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the headings of a Markdown file (outside code blocks).
fn anchors(md: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in md.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Targets of the inline links `[text](target)` of a Markdown file, outside
/// code blocks and code spans.
fn link_targets(md: &str) -> Vec<String> {
    let mut in_code = false;
    let mut targets = Vec::new();
    for line in md.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop code spans, keep the text around them.
        let text: String = line.split('`').step_by(2).collect();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    targets
}

#[test]
fn relative_links_point_at_existing_files() {
    let root = root();
    let mut files = vec![root.join("README.md")];
    let docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    assert!(docs.len() >= 5, "docs/*.md: {docs:?}");
    files.extend(docs);
    let mut checked = 0;
    let mut broken = Vec::new();
    for file in &files {
        let md = read(file);
        let name = file.strip_prefix(&root).unwrap_or(file).display();
        for target in link_targets(&md) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            checked += 1;
            if !dest.exists() {
                broken.push(format!("{name}: {target} (no such file)"));
            } else if let Some(a) = anchor
                && dest.extension().is_some_and(|x| x == "md")
                && !anchors(&read(&dest)).contains(a)
            {
                broken.push(format!("{name}: {target} (no such heading)"));
            }
        }
    }
    assert!(checked >= 10, "only {checked} relative links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The module map in the crate docs (`src/lib.rs`) names every source file
/// of each folder, and only files that exist.
#[test]
fn module_map_names_every_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("read src/lib.rs");
    let rows: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//! | "))
        .filter(|l| !l.starts_with("module") && !l.starts_with("---"))
        .collect();
    assert!(rows.len() >= 8, "module map rows: {rows:?}");
    let mut folders = 0;
    for row in rows {
        let first = row.split(" | ").next().unwrap_or_default();
        let folder = if let Some(m) = first.strip_prefix("[`").and_then(|m| m.strip_suffix("`]")) {
            let file = root.join(format!("src/{m}.rs"));
            if file.is_file() {
                continue;
            }
            root.join(format!("src/{m}"))
        } else {
            root.join(first.trim_matches('`'))
        };
        assert!(
            folder.is_dir(),
            "{} is neither a module file nor a folder",
            folder.display()
        );
        folders += 1;
        // Names in backticks ending in .rs or /.
        let named: Vec<&str> = row
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.ends_with(".rs") || t.ends_with('/'))
            .filter(|t| !t.starts_with("src/"))
            .collect();
        for n in &named {
            assert!(
                folder.join(n).exists(),
                "the map names {n} in {}, which has none",
                folder.display()
            );
        }
        for e in std::fs::read_dir(&folder).expect("read folder") {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            let shown = if e.path().is_dir() {
                format!("{name}/")
            } else {
                name.clone()
            };
            if name == "tests.rs" || (!shown.ends_with('/') && !name.ends_with(".rs")) {
                continue;
            }
            assert!(
                named.contains(&shown.as_str()),
                "the module map in src/lib.rs does not name {shown} of {}",
                folder.display()
            );
        }
    }
    assert!(folders >= 7, "{folders} folders in the module map");
    // Every file module at the top of src/ has its own row.
    for e in std::fs::read_dir(root.join("src")).expect("read src") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        if let Some(m) = name.strip_suffix(".rs").filter(|m| *m != "lib") {
            assert!(
                lib.contains(&format!("//! | [`{m}`] |")),
                "the module map in src/lib.rs has no row for src/{name}"
            );
        }
    }
}
