//! Filling an output from an input artifact's files: hard links where the file system allows
//! (published artifacts never change, so sharing an inode is safe and a multi-gigabyte model costs
//! no second copy), copies where it does not (another file system).

use std::path::Path;

/// Links (or copies) every file under `from` into `to`, creating directories as needed; an error
/// names the file.
pub fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let at = |p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    std::fs::create_dir_all(to).map_err(|e| at(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| at(from, e))? {
        let entry = entry.map_err(|e| at(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            link_tree(&src, &dst)?;
        } else {
            link_file(&src, &dst).map_err(|e| at(&src, e))?;
        }
    }
    Ok(())
}

/// Links (or copies) one file.
pub fn link_file(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::hard_link(src, dst).or_else(|_| std::fs::copy(src, dst).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_a_tree_with_the_same_contents() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        std::fs::create_dir_all(from.join("sub")).unwrap();
        std::fs::write(from.join("x.txt"), "x").unwrap();
        std::fs::write(from.join("sub/y.txt"), "y").unwrap();
        let to = dir.path().join("b");
        link_tree(&from, &to).unwrap();
        assert_eq!(std::fs::read_to_string(to.join("x.txt")).unwrap(), "x");
        assert_eq!(std::fs::read_to_string(to.join("sub/y.txt")).unwrap(), "y");
        let err = link_tree(&dir.path().join("missing"), &dir.path().join("c")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
