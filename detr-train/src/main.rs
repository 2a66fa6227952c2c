fn main() {
    println!("detr-train: not yet implemented");
}
