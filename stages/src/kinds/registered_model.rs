//! The `registered_model` artifact kind: the files of one model version register recorded.

use medalign_engine::ArtifactKind;

/// The `registered_model` artifact kind: the files of one registered version.
pub const REGISTERED_MODEL: ArtifactKind = ArtifactKind {
    name: "registered_model",
    doc: "a registered model version: registration.json, adapter/, and vertex/ when asked",
    schema_json: None,
};
