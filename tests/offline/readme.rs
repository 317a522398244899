//! The README and the manual in `docs/` show what the code does: the README's Mermaid diagram is
//! the one the derive generates, every Rust block of the manual is a doctest, and every relative
//! link points to a file (and heading) that exists.

use std::path::{Path, PathBuf};

use fsm_suite::order::OrderState;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{} is readable: {error}", path.display()))
}

fn readme() -> String {
    read(&Path::new(ROOT).join("README.md"))
}

/// `docs/*.md`, sorted.
fn docs_pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "docs/ has pages");
    pages
}

/// The README and every docs page.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![Path::new(ROOT).join("README.md")];
    files.extend(docs_pages());
    files
}

/// The info string of a line that opens or closes a fenced code block, or `None`.
fn fence(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    (line.len() - trimmed.len() <= 3 && (trimmed.starts_with("```") || trimmed.starts_with("~~~")))
        .then(|| trimmed.trim_start_matches(['`', '~']).trim())
}

/// Whether rustdoc compiles a fenced block with this info string: no language, `rust`, or only
/// rustdoc's own attributes (`no_run`, `ignore`, ...).
fn is_rust(info: &str) -> bool {
    let tokens: Vec<&str> = info.split([',', ' ', '\t']).filter(|token| !token.is_empty()).collect();
    tokens.contains(&"rust")
        || tokens.iter().all(|token| {
            matches!(
                *token,
                "ignore" | "no_run" | "should_panic" | "compile_fail" | "test_harness" | "standalone_crate"
            ) || token.starts_with("ignore-")
                || token.starts_with("edition")
                || (token.starts_with('E') && token.len() > 1 && token[1..].chars().all(|c| c.is_ascii_digit()))
        })
}

/// The lines outside fenced code blocks, and the info strings of the blocks.
fn split_code(text: &str) -> (Vec<&str>, Vec<&str>) {
    let (mut prose, mut infos, mut in_code) = (Vec::new(), Vec::new(), false);
    for line in text.lines() {
        match fence(line) {
            Some(info) if !in_code => {
                infos.push(info);
                in_code = true;
            }
            Some(_) => in_code = false,
            None if !in_code => prose.push(line),
            None => {}
        }
    }
    (prose, infos)
}

/// A line without its inline code spans.
fn without_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join("")
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings.
fn anchors(text: &str) -> Vec<String> {
    let (prose, _) = split_code(text);
    prose
        .iter()
        .filter_map(|line| {
            let hashes = line.len() - line.trim_start_matches('#').len();
            ((1..=6).contains(&hashes) && line[hashes..].starts_with(' ')).then(|| slug(&line[hashes..]))
        })
        .collect()
}

/// The targets of the inline links `[text](target)` outside code.
fn link_targets(text: &str) -> Vec<String> {
    let (prose, _) = split_code(text);
    let mut targets = Vec::new();
    for line in prose {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find([')', ' ']).unwrap_or(rest.len());
            targets.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    targets
}

#[test]
fn readme_diagram_is_the_generated_one() {
    let readme = readme();
    let start = readme.find("```mermaid\n").expect("README has a mermaid block") + "```mermaid\n".len();
    let end = start + readme[start..].find("```").expect("the mermaid block is closed");
    assert_eq!(readme[start..end].trim_end(), OrderState::MERMAID.trim_end());
}

#[test]
fn readme_shows_the_two_newcomer_commands() {
    let readme = readme();
    assert!(readme.contains("cargo run --example orders"));
    assert!(readme.contains("cargo test --workspace"));
}

#[test]
fn readme_is_a_landing_page_that_links_every_docs_page() {
    let readme = readme();
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; the manual belongs in docs/");
    for page in docs_pages() {
        let name = page.file_name().expect("a file name").to_string_lossy();
        assert!(readme.contains(&format!("](docs/{name})")), "README.md does not link docs/{name}");
    }
}

#[test]
fn every_docs_page_with_rust_blocks_is_compiled_as_doctests() {
    let lib = read(&Path::new(ROOT).join("src/lib.rs"));
    let mut checked = 0;
    for page in docs_pages() {
        let name = page.file_name().expect("a file name").to_string_lossy().into_owned();
        let text = read(&page);
        let (_, infos) = split_code(&text);
        if infos.iter().any(|info| is_rust(info)) {
            let include = format!("#[doc = include_str!(\"../docs/{name}\")]");
            assert!(lib.contains(&include), "docs/{name} has Rust blocks: add `{include}` to src/lib.rs");
            checked += 1;
        }
    }
    assert!(checked > 0, "some docs pages have Rust blocks");
    assert!(lib.contains("#[doc = include_str!(\"../README.md\")]"), "src/lib.rs includes README.md");
}

#[test]
fn the_block_detection_follows_rustdoc() {
    for info in ["", "rust", "rust,no_run", "no_run", "ignore", "should_panic", "edition2024", "compile_fail,E0277"] {
        assert!(is_rust(info), "{info:?} is Rust for rustdoc");
    }
    for info in ["sh", "text", "mermaid", "toml", "sql"] {
        assert!(!is_rust(info), "{info:?} is not Rust for rustdoc");
    }
    assert_eq!(slug(" Running against PostgreSQL, MariaDB and Redis"), "running-against-postgresql-mariadb-and-redis");
    assert_eq!(link_targets("see [a](b.md#c) and `[x](y)` [d](e)"), ["b.md#c", "e"]);
}

#[test]
fn every_relative_link_points_to_an_existing_file_and_heading() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = read(&file);
        let dir = file.parent().expect("a directory");
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if path.is_empty() { file.clone() } else { dir.join(path) };
            if !resolved.exists() {
                broken.push(format!("{}: `{target}`: no file {}", file.display(), resolved.display()));
                continue;
            }
            if !fragment.is_empty()
                && resolved.extension().is_some_and(|ext| ext == "md")
                && !anchors(&read(&resolved)).iter().any(|anchor| anchor == fragment)
            {
                broken.push(format!(
                    "{}: `{target}`: no heading #{fragment} in {}",
                    file.display(),
                    resolved.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked > 0, "the README and the docs have relative links");
}
