//! Class names (built-in COCO, COCO JSON, JSON list, text list) and input collection.

mod common;

use common::temp_dir;
use detr_infer::inputs::collect_inputs;
use detr_infer::labels::{Labels, COCO_NAMES};

#[test]
fn coco_names_are_built_in() {
    let l = Labels::default_for(91);
    assert_eq!(l.name(1), "person");
    assert_eq!(l.name(18), "dog");
    assert_eq!(l.name(90), "toothbrush");
    assert_eq!(l.name(12), "N/A");
    assert_eq!(COCO_NAMES.len(), 91);
    assert_eq!(Labels::default_for(6).name(3), "class 3");
}

#[test]
fn labels_from_coco_json_list_and_text() {
    let coco =
        r#"{"images": [], "categories": [{"id": 2, "name": "cat"}, {"id": 5, "name": "dog"}]}"#;
    let l = Labels::parse(coco).unwrap();
    assert_eq!((l.name(2).as_str(), l.name(5).as_str()), ("cat", "dog"));
    assert_eq!(l.name(3), "class 3");
    let l = Labels::parse(r#"["bg", "cat"]"#).unwrap();
    assert_eq!(l.name(1), "cat");
    let l = Labels::parse("zero\none\n\n").unwrap();
    assert_eq!((l.len(), l.name(1).as_str()), (2, "one"));
    assert!(Labels::parse(r#"{"categories": [{"id": -1, "name": "x"}]}"#).is_err());
    assert!(Labels::parse(r#"[1, 2]"#).is_err());
    assert!(Labels::parse("").is_err());
    let dir = temp_dir("labels");
    let err = Labels::load(&dir.join("missing.txt")).unwrap_err();
    assert!(err.to_string().contains("missing.txt"), "{err}");
}

#[test]
fn inputs_ids_and_unique_names() {
    let dir = temp_dir("inputs");
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    for f in ["000000039769.jpg", "000000000632.PNG", "readme.md"] {
        std::fs::write(dir.join(f), b"x").unwrap();
    }
    std::fs::write(sub.join("000000039769.jpg"), b"x").unwrap();
    // Numeric stems that are unique become the image ids.
    let inputs = collect_inputs(std::slice::from_ref(&dir)).unwrap();
    assert_eq!(inputs.len(), 2, "readme.md skipped, folders not recursed");
    assert_eq!(inputs[0].image_id, 632);
    assert_eq!(inputs[1].image_id, 39769);
    // A repeated stem: ids fall back to positions, output names stay unique.
    let inputs =
        collect_inputs(&[dir.join("000000039769.jpg"), sub.join("000000039769.jpg")]).unwrap();
    assert_eq!(
        inputs.iter().map(|i| i.image_id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(inputs[0].output_stem, "000000039769");
    assert_eq!(inputs[1].output_stem, "000000039769_2");
    // A missing file is kept (reported when it cannot be read); nothing at all is an error.
    assert_eq!(collect_inputs(&[dir.join("nope.jpg")]).unwrap().len(), 1);
    assert!(collect_inputs(&[sub.join("empty")]).is_ok());
    let empty = temp_dir("inputs-empty");
    assert!(collect_inputs(&[empty]).is_err());
}
