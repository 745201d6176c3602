#[tokio::test]
async fn probe() {
    use testcontainers::{GenericImage, runners::AsyncRunner};
    let r = GenericImage::new("bff-local/nothing", "latest").start().await;
    println!("{:?}", r.err());
}
