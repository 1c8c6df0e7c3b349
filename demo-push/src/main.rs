//! `longlink-push`: the push system's binary.

fn main() {
    println!("longlink-push: see `longlink-push --help`");
}
