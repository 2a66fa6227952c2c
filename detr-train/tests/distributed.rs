//! Training across processes (`--world_size`, `--rank`, `--dist_url`): two `detr-train`
//! processes on 127.0.0.1 against one process over the same global batch, and a process that
//! dies mid-run. Flex backend, micro model; every port is picked free.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datasets::TransformConfig;
use detr_train::config::{SyntheticConfig, TrainConfig};

mod common;
use common::{checkpoint_values, module_values, B};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("detr-dist-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port that is free now (on 127.0.0.1, where rank 0 will listen).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The micro run: 64×64 images resized to one size (so that a batch of two needs no
/// padding and matches two batches of one), no dropout, 3 steps.
fn micro(root: &Path, batch_size: usize, epochs: usize) -> TrainConfig {
    let mut c = TrainConfig::synthetic_tiny();
    c.model.arch.enc_layers = 1;
    c.model.arch.dec_layers = 2;
    c.model.arch.num_queries = 4;
    c.model.arch.dim_feedforward = 32;
    c.model.arch.hidden_dim = 16;
    c.model.arch.nheads = 2;
    c.model.arch.backbone_width = 8;
    c.model.arch.dropout = 0.0;
    c.data.batch_size = batch_size;
    c.data.num_workers = 1;
    c.data.transforms = Some(TransformConfig {
        scales: vec![48],
        max_size: 48,
        val_size: 48,
        select_p: 1.0,
        ..TransformConfig::scaled(0.08)
    });
    c.data.coco_path = root.join("data");
    c.data.synthetic = SyntheticConfig {
        train_images: 6,
        val_images: 3,
        min_image_size: 64,
        max_image_size: 64,
        ..SyntheticConfig::default()
    };
    c.optim.epochs = epochs;
    c.optim.lr_drop = 100;
    c.run.eval_every = 1;
    c.run.num_vis_images = 0;
    c.run.output_dir = root.join("out");
    c
}

fn write_config(cfg: &TrainConfig, path: &Path) {
    std::fs::write(path, serde_json::to_string_pretty(cfg).unwrap()).unwrap();
}

fn spawn(config: &Path, rank: usize, port: u16, extra: &[&str], log: &Path) -> Child {
    spawn_in(config, 2, rank, port, extra, log)
}

fn spawn_in(
    config: &Path,
    world_size: usize,
    rank: usize,
    port: u16,
    extra: &[&str],
    log: &Path,
) -> Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_detr-train"))
        .arg("--config")
        .arg(config)
        .args(["--world_size", &world_size.to_string()])
        .args(["--rank", &rank.to_string()])
        .args(["--dist_url", &format!("tcp://127.0.0.1:{port}")])
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("WORLD_SIZE")
        .env_remove("RANK")
        .stdout(Stdio::from(file.try_clone().unwrap()))
        .stderr(file)
        .spawn()
        .unwrap()
}

/// Runs ranks 0 and 1 to completion (each within 120 s) and asserts that both succeed.
fn run_pair(config: &Path, extra: &[&str], logs: &[PathBuf; 2]) {
    let port = free_port();
    let mut children = [
        spawn(config, 0, port, extra, &logs[0]),
        spawn(config, 1, port, extra, &logs[1]),
    ];
    for (r, c) in children.iter_mut().enumerate() {
        let status = wait_for(c, Duration::from_secs(120));
        assert!(
            status.is_some_and(|s| s.success()),
            "rank {r}: {status:?}\n{}",
            read(&logs[r])
        );
    }
}

/// Waits for `child` at most `limit`; kills it past that.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn read(path: &Path) -> String {
    let mut s = String::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// The weight fingerprints a process logged, one per epoch.
fn fingerprints(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split("(fingerprint ").nth(1))
        .map(|s| s.trim_end_matches(')').to_string())
        .collect()
}

#[test]
fn two_processes_train_like_one_over_the_same_global_batch() {
    let root = tmp("pair");
    // One process with two devices (flex has one: two shards in threads on it), batch 1
    // per device: the same two images per step, one per shard (this also generates the
    // dataset both runs read).
    let mut single = micro(&root, 1, 1);
    single.run.output_dir = root.join("single");
    single.model.num_classes = Some(6);
    let s = detr_train::run::run::<B>(single.clone(), vec![Default::default(), Default::default()])
        .unwrap();
    assert_eq!(s.epochs, 1);

    // Two processes, batch 1 each: the same 2 images per step.
    let mut pair = micro(&root, 1, 1);
    pair.run.output_dir = root.join("pair");
    pair.model.num_classes = Some(6);
    let config = root.join("pair.json");
    write_config(&pair, &config);
    let logs = [root.join("rank0.log"), root.join("rank1.log")];
    run_pair(&config, &["--dist_timeout", "60"], &logs);
    let (log0, log1) = (read(&logs[0]), read(&logs[1]));
    assert!(log0.contains("all 2 processes joined"), "{log0}");

    // The processes hold identical weights (checked by the run itself after every epoch,
    // and logged by both).
    let (f0, f1) = (fingerprints(&log0), fingerprints(&log1));
    assert_eq!(f0.len(), 1, "{log0}");
    assert_eq!(f0, f1);

    // Only rank 0 writes the run's files.
    let out = &pair.run.output_dir;
    for f in ["checkpoint.mpk", "log.txt", "model.mpk", "config.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    // And they equal the single process's weights within float tolerance (the shards are
    // the same, only where the sums happen differs): 3 AdamW steps at lr 1e-4 move a weight
    // by up to ~3e-4; here the sums happen in the same order and the weights are bit-identical.
    let a = checkpoint_values(&single, &single.run.output_dir.join("checkpoint.mpk"));
    let b = checkpoint_values(&single, &out.join("checkpoint.mpk"));
    assert_eq!(a.len(), b.len());
    let init = {
        let device = Default::default();
        let (model, _) = detr_train::run::build_model::<B>(&single, 6, &device).unwrap();
        module_values(&model)
    };
    let mut worst: f32 = 0.0;
    let mut moved: f32 = 0.0;
    let mut moved_pair: f32 = 0.0;
    for ((x, y), z) in a.iter().zip(&b).zip(&init) {
        for ((p, q), r) in x.iter().zip(y).zip(z) {
            worst = worst.max((p - q).abs());
            moved = moved.max((p - r).abs());
            moved_pair = moved_pair.max((q - r).abs());
        }
    }
    assert!(
        moved > 1e-4 && moved_pair > 1e-4,
        "training did not move the weights ({moved}, {moved_pair})"
    );
    eprintln!("two processes vs one: worst difference {worst} (largest update {moved})");
    assert!(
        worst < 2e-5,
        "two processes vs one: worst difference {worst}"
    );

    // The validation numbers are computed over both processes' detections: the same as
    // the single process's within the same tolerance.
    let last = |dir: &Path| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join("log.txt")).unwrap();
        serde_json::from_str(text.lines().last().unwrap()).unwrap()
    };
    let (ls, lp) = (last(&single.run.output_dir), last(out));
    let ap = |v: &serde_json::Value| v["test_coco_eval_bbox"][1].as_f64().unwrap();
    assert!((ap(&ls) - ap(&lp)).abs() < 1e-3, "{ls}\n{lp}");
    let loss = |v: &serde_json::Value| v["test_loss"].as_f64().unwrap();
    assert!((loss(&ls) - loss(&lp)).abs() < 1e-3, "{ls}\n{lp}");

    // Both processes resume from rank 0's checkpoint for a second epoch, again in step.
    let checkpoint = out.join("checkpoint.mpk");
    let logs = [
        root.join("rank0-resumed.log"),
        root.join("rank1-resumed.log"),
    ];
    let extra = [
        "--dist_timeout",
        "60",
        "--epochs",
        "2",
        "--resume",
        checkpoint.to_str().unwrap(),
    ];
    run_pair(&config, &extra, &logs);
    let (f0, f1) = (fingerprints(&read(&logs[0])), fingerprints(&read(&logs[1])));
    assert_eq!(f0.len(), 1);
    assert_eq!(f0, f1);
    let lines = std::fs::read_to_string(out.join("log.txt")).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
}

#[test]
fn a_process_that_dies_stops_the_other_within_the_timeout() {
    let root = tmp("dies");
    let mut cfg = micro(&root, 1, 1000);
    cfg.model.num_classes = Some(6);
    // Generate the data once, before the processes start.
    detr_train::splits::ensure_synthetic(&cfg).unwrap();
    let config = root.join("run.json");
    write_config(&cfg, &config);
    let port = free_port();
    let logs = [root.join("rank0.log"), root.join("rank1.log")];
    let extra = ["--dist_timeout", "5"];
    let mut rank0 = spawn(&config, 0, port, &extra, &logs[0]);
    let mut rank1 = spawn(&config, 1, port, &extra, &logs[1]);
    // Both train (a first epoch ended) …
    let t = Instant::now();
    while !read(&logs[1]).contains("fingerprint") {
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "the processes did not train:\n{}\n{}",
            read(&logs[0]),
            read(&logs[1])
        );
        assert!(rank0.try_wait().unwrap().is_none(), "{}", read(&logs[0]));
        std::thread::sleep(Duration::from_millis(100));
    }
    // … then rank 1 dies.
    rank1.kill().unwrap();
    rank1.wait().unwrap();
    let killed = Instant::now();
    let status = wait_for(&mut rank0, Duration::from_secs(60));
    let log0 = read(&logs[0]);
    let status = status.unwrap_or_else(|| panic!("rank 0 still runs 60 s later:\n{log0}"));
    assert!(!status.success(), "{log0}");
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "rank 0 took {:?}",
        killed.elapsed()
    );
    assert!(log0.contains("distributed training"), "{log0}");
    // The last complete epoch's checkpoint is intact.
    let out = &cfg.run.output_dir;
    assert!(out.join("checkpoint.mpk").is_file());
    detr_train::checkpoint::read_state(&out.join("checkpoint.mpk")).unwrap();
}

#[test]
fn a_busy_port_a_rank_taken_twice_and_a_rank_outside_the_world_are_clear_errors() {
    let root = tmp("errors");
    let mut cfg = micro(&root, 1, 1);
    cfg.model.num_classes = Some(6);
    detr_train::splits::ensure_synthetic(&cfg).unwrap();
    let config = root.join("run.json");
    write_config(&cfg, &config);
    // Something else listens on the port.
    let busy = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let log = root.join("busy.log");
    let mut child = spawn(&config, 0, port, &["--dist_timeout", "5"], &log);
    let status = wait_for(&mut child, Duration::from_secs(60)).expect("it should fail fast");
    assert!(!status.success());
    let text = read(&log);
    assert!(text.contains(&format!("port {port}")), "{text}");
    drop(busy);

    // Two processes say they are rank 1 (of 3): rank 0 refuses the second, and all stop.
    let port = free_port();
    let logs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("dup{i}.log"))).collect();
    let mut children = vec![spawn_in(
        &config,
        3,
        0,
        port,
        &["--dist_timeout", "20"],
        &logs[0],
    )];
    for log in &logs[1..] {
        children.push(spawn_in(
            &config,
            3,
            1,
            port,
            &["--dist_timeout", "20"],
            log,
        ));
    }
    for (i, c) in children.iter_mut().enumerate() {
        let status = wait_for(c, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("process {i} still runs:\n{}", read(&logs[i])));
        assert!(!status.success(), "{}", read(&logs[i]));
    }
    let text = read(&logs[0]);
    assert!(text.contains("rank 1 is already taken"), "{text}");

    let out = Command::new(env!("CARGO_BIN_EXE_detr-train"))
        .arg("--config")
        .arg(&config)
        .args(["--world_size", "2", "--rank", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("rank 2 is not below world_size 2"), "{text}");
}
