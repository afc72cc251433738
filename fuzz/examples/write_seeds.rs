//! Writes the committed seed corpus (fuzz/seeds/<target>/) from the real
//! fixtures: `cargo run --example write_seeds` in fuzz/.
use serde_json::json;
use serverconfig_webhook_fuzz::*;

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let review_dir = dir.join("review");
    let render_dir = dir.join("render");
    std::fs::create_dir_all(&review_dir)?;
    std::fs::create_dir_all(&render_dir)?;
    let built = |srv: &str, sc: &str| {
        let seldon = real_config("mlserver", CONTROLLER_NS, "mlserver");
        controller_statefulset(&server(TEAM, srv, sc), &seldon)
    };
    let sts = built("mlserver", "mlserver-config");
    let mut deployment = sts.clone();
    deployment["kind"] = json!("Deployment");
    let mut no_owner = sts.clone();
    no_owner["metadata"]["ownerReferences"] = json!([]);
    let seeds = [
        ("create-mlserver", review("CREATE", &sts, None)),
        ("update-mlserver", review("UPDATE", &sts, Some(&sts))),
        (
            "triton-controller-only",
            review("CREATE", &built("triton", "triton"), None),
        ),
        (
            "empty-serverconfig",
            review("CREATE", &built("empty", ""), None),
        ),
        (
            "broken-podspec",
            review("CREATE", &built("broken", "broken-config"), None),
        ),
        (
            "missing-server",
            review("CREATE", &built("ghost", "mlserver-config"), None),
        ),
        ("deployment", review("CREATE", &deployment, None)),
        ("no-owner", review("CREATE", &no_owner, None)),
    ];
    for (name, v) in &seeds {
        std::fs::write(
            review_dir.join(format!("{name}.json")),
            serde_json::to_vec(v)?,
        )?;
    }
    // render: a StatefulSet (JSON and YAML), and the real fixture files.
    std::fs::write(
        render_dir.join("statefulset.json"),
        serde_json::to_vec_pretty(&sts)?,
    )?;
    let yaml = serde_yaml_ng::to_string(&sts).map_err(std::io::Error::other)?;
    std::fs::write(render_dir.join("statefulset.yaml"), yaml)?;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    for (file, name) in [
        ("servers.yaml", "server.yaml"),
        ("serverconfigs.yaml", "serverconfig.yaml"),
    ] {
        let text = std::fs::read_to_string(fixtures.join(file))?;
        // One document per seed, as render takes exactly one.
        let first = text
            .split("\n---")
            .map(str::trim)
            .find(|d| d.contains("kind:"))
            .unwrap_or_default();
        std::fs::write(render_dir.join(name), first)?;
    }
    write_plan_seeds(&dir.join("plan"))?;
    write_rollback_seeds(&dir.join("rollback"), &sts)
}

/// `plan` seeds: lists of choices (see `Choices` and `check_plan` for what
/// each byte picks). Placeholder part: how many `(namespace, name)` pairs
/// and their pool indexes; how many controller configs, each a name index
/// and a shape; the cap. Workload part: the ServerConfig name, whether
/// auto-update is off, the Server's pod spec, the config it was admitted
/// with and the one of now (present?, fixture, edits), the controller's
/// config, `--on-missing`, the kind, whether the webhook admitted it, and
/// later edits.
fn write_plan_seeds(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    // team-a/mlserver, team-b/mlserver, team-a/triton; placeholders: ours
    // for mlserver, a legacy one for huggingface, the real triton; cap 3.
    let placeholders: &[u8] = &[3, 0, 0, 1, 0, 0, 1, 3, 0, 1, 3, 2, 1, 0, 1, 3];
    // Admitted with image tag 1, the config now has tag 2: a rollout.
    let rollout: &[u8] = &[
        0, 0, 0, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 2, 0, 2, 0, 1, 0,
    ];
    let with = |head: &[u8], tail: &[u8]| [head, tail].concat();
    let mut heal = rollout.to_vec();
    heal[19] = 0; // never admitted
    let mut held = rollout.to_vec();
    held[1] = 1; // disableAutoUpdate
    let mut deployment = rollout.to_vec();
    deployment[18] = 1;
    // Four names in team-a under cap 1; adopted shapes in the controller
    // namespace (image added, a label added, a labelled real config).
    let capped: &[u8] = &[5, 0, 0, 0, 1, 0, 2, 0, 3, 1, 4, 3, 0, 3, 1, 4, 4, 5, 0, 1];
    // No config then or now; --on-missing deny; a real controller config.
    let missing: &[u8] = &[1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0];
    let seeds: [(&str, Vec<u8>); 7] = [
        ("rollout", with(placeholders, rollout)),
        ("heal", with(placeholders, &heal)),
        ("held", with(placeholders, &held)),
        ("deployment", with(placeholders, &deployment)),
        ("capped-adopted", with(capped, rollout)),
        ("missing-config", with(placeholders, missing)),
        ("empty", Vec::new()),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// `rollback` seeds: a file as `migrate` writes it (YAML and JSON) from the
/// real objects, one with anchors and aliases, and refusals.
fn write_rollback_seeds(dir: &std::path::Path, sts: &serde_json::Value) -> std::io::Result<()> {
    use serverconfig_webhook::migrate::rollback::{Replaced, RollbackFile};
    std::fs::create_dir_all(dir)?;
    let (from, to) = (TEAM, "team-b");
    let mut file = RollbackFile::new(from, to);
    file.created
        .push(real_config("mlserver", to, "mlserver-config"));
    file.replaced.push(Replaced {
        before: real_config("triton", to, "triton"),
        after: real_config("triton", to, "triton"),
    });
    file.deleted
        .push(server(from, "mlserver", "mlserver-config"));
    file.deleted
        .push(real_config("mlserver", from, "mlserver-config"));
    let yaml = file.to_yaml().map_err(std::io::Error::other)?;
    std::fs::write(dir.join("move.yaml"), &yaml)?;
    std::fs::write(dir.join("move.json"), serde_json::to_vec(&file)?)?;
    let aliases = format!(
        "apiVersion: serverconfig-webhook/v1\nkind: MigrationRollback\nfrom: {from}\nto: {to}\n\
created:\n- &sc {{apiVersion: mlops.seldon.io/v1alpha1, kind: ServerConfig, metadata: {{name: a, namespace: {to}}}}}\n\
replaced:\n- {{before: *sc, after: *sc}}\n"
    );
    std::fs::write(dir.join("aliases.yaml"), aliases)?;
    let mut wrong = RollbackFile::new(from, to);
    wrong.created = vec![
        serde_json::json!({"apiVersion": "apps/v1", "kind": sts["kind"],
        "metadata": {"name": sts["metadata"]["name"], "namespace": to}}),
    ];
    std::fs::write(
        dir.join("not-a-moved-kind.yaml"),
        wrong.to_yaml().map_err(std::io::Error::other)?,
    )?;
    std::fs::write(dir.join("empty.yaml"), "")?;
    Ok(())
}
