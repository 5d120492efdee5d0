//! What `sbatch` is given for one stage: options from the stage's resources, its dependencies and
//! its log, and a script that runs the stage's job command.

use std::path::Path;

use crate::resources::Resources;

/// The options of one stage's job: `name`, output to `log` (a `%j` pattern), run in `dir`, after
/// the jobs `after` succeed (and cancelled if one of them fails).
pub(crate) fn options(
    name: &str,
    log: &Path,
    dir: &Path,
    r: &Resources,
    after: &[String],
) -> Vec<String> {
    let mut o = vec![
        format!("--job-name={name}"),
        format!("--output={}", log.display()),
        format!("--chdir={}", dir.display()),
        "--kill-on-invalid-dep=yes".to_string(),
    ];
    if !after.is_empty() {
        o.push(format!("--dependency=afterok:{}", after.join(":")));
    }
    let mut opt = |flag: &str, v: &Option<String>| {
        if let Some(v) = v {
            o.push(format!("--{flag}={v}"));
        }
    };
    opt("cpus-per-task", &r.cpus.map(|n| n.to_string()));
    opt("mem", &r.mem);
    opt("gres", &r.gpus.as_ref().filter(|g| *g != "0").map(|g| format!("gpu:{g}")));
    opt("time", &r.time);
    opt("partition", &r.partition);
    opt("account", &r.account);
    opt("qos", &r.qos);
    opt("constraint", &r.constraint);
    o
}

/// A batch script that runs `argv`.
pub(crate) fn script(argv: &[String]) -> String {
    let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
    format!("#!/bin/sh\nexec {}\n", words.join(" "))
}

/// `a'b` -> `'a'\''b'`: one shell word whatever it holds.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_become_options_and_zero_gpus_none() {
        let r = Resources {
            cpus: Some(4),
            mem: Some("16G".into()),
            gpus: Some("0".into()),
            time: Some("2:00:00".into()),
            partition: Some("gpu".into()),
            ..Default::default()
        };
        let o = options(
            "p.sft",
            Path::new("/s/logs/job-%j.log"),
            Path::new("/w"),
            &r,
            &["7".into(), "9".into()],
        );
        assert_eq!(
            o,
            [
                "--job-name=p.sft",
                "--output=/s/logs/job-%j.log",
                "--chdir=/w",
                "--kill-on-invalid-dep=yes",
                "--dependency=afterok:7:9",
                "--cpus-per-task=4",
                "--mem=16G",
                "--time=2:00:00",
                "--partition=gpu",
            ]
        );
        let gpu = Resources { gpus: Some("a100:2".into()), ..Default::default() };
        assert!(options("n", Path::new("l"), Path::new("d"), &gpu, &[])
            .contains(&"--gres=gpu:a100:2".into()));
    }

    #[test]
    fn the_script_quotes_every_word() {
        assert_eq!(
            script(&["/bin/medalign".into(), "it's".into()]),
            "#!/bin/sh\nexec '/bin/medalign' 'it'\\''s'\n"
        );
    }
}
