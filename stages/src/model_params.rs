//! Model references in stage params (`model`, `base`, `candidate`): a registry reference such as
//! `medalign@staging` keys the stage on the version it names now, so moving the alias reruns it.

use std::collections::BTreeMap;

use medalign_engine::CheckContext;

/// `<param>.registered` -> the registered version and its content pin, for each param that names a
/// registered model (references that do not resolve yet add nothing; the run reports them).
pub fn registry_facts<'a>(
    params: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    cx: &CheckContext,
) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    for (name, reference) in params {
        if let Some(Ok(source)) =
            reference.map(|r| medalign_registry::resolve(r, &cx.manifest_dir, &cx.store_dir))
        {
            facts.extend(source.registered.map(|r| (format!("{name}.registered"), r)));
        }
    }
    facts
}
