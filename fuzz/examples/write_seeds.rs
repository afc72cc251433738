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
    Ok(())
}
