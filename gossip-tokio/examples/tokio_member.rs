//! A member that joins through a seed, publishes a state, prints every
//! membership event for a minute (`--seconds`) or until Ctrl-C, then leaves
//! gracefully.
//!
//! ```sh
//! cargo run -p gossip-tokio --example tokio_member -- --listen 127.0.0.1:7946
//! cargo run -p gossip-tokio --example tokio_member -- --listen 127.0.0.1:7947 --seed 127.0.0.1:7946
//! ```
//!
//! Its options are `gossip agent`'s node options (`NodeArgs`, feature
//! `clap`): `--listen`, `--advertise`, `--seed`, `--cluster`, `--state`,
//! `--interval-ms`, `--data-dir`.

use std::time::Duration;

use clap::Parser;
use gossip_driver::NodeArgs;
use gossip_tokio::{RecvError, spawn};

/// A member that prints membership events for a while, then leaves.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// Leave after this many seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let node = spawn(args.node.node_config()?).await?;
    node.set_state("ROLE", b"example").await?;
    println!(
        "member {} (generation {}); Ctrl-C to leave",
        node.local_addr(),
        node.generation().0
    );
    let mut events = node.subscribe();
    let leave = tokio::time::sleep(Duration::from_secs(args.seconds));
    tokio::pin!(leave);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => println!("{event}"),
                Err(RecvError::Lagged(n)) => println!("({n} events missed)"),
                Err(_) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = &mut leave => break,
        }
    }
    node.shutdown().await?;
    println!("left");
    Ok(())
}
