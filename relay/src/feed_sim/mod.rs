#[derive(Debug, clap::Args)] pub struct FeedSimArgs {}
pub fn run(_a: FeedSimArgs) -> anyhow::Result<()> { todo!() }
