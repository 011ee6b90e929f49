//! A member that joins through a seed, publishes a state, prints every
//! membership event for a minute (`--seconds`), then leaves gracefully, on
//! smol.
//!
//! ```sh
//! cargo run -p gossip-smol --example smol_member -- --listen 127.0.0.1:7946
//! cargo run -p gossip-smol --example smol_member -- --listen 127.0.0.1:7947 --seed 127.0.0.1:7946
//! ```
//!
//! Its options are `gossip agent`'s node options (`NodeArgs`, feature
//! `clap`): `--listen`, `--advertise`, `--seed`, `--cluster`, `--state`,
//! `--interval-ms`, `--data-dir`.

use std::time::Duration;

use clap::Parser;
use gossip_driver::NodeArgs;
use gossip_smol::{MembershipEvent, RecvError, spawn};
use smol::Timer;

/// A member that prints membership events for a while, then leaves.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    node: NodeArgs,
    /// Leave after this many seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    smol::block_on(async {
        let node = spawn(args.node.node_config()?).await?;
        node.set_state("ROLE", b"example").await?;
        println!(
            "member {} (generation {}); leaves in {} s",
            node.local_addr(),
            node.generation().0,
            args.seconds
        );
        let mut events = node.subscribe();
        let leave_at = std::time::Instant::now() + Duration::from_secs(args.seconds);
        loop {
            // The next event, or None when it is time to leave.
            let next = smol::future::or(async { Some(events.recv().await) }, async {
                Timer::at(leave_at).await;
                None::<Result<MembershipEvent, RecvError>>
            })
            .await;
            match next {
                Some(Ok(event)) => println!("{event}"),
                Some(Err(RecvError::Lagged(n))) => println!("({n} events missed)"),
                Some(Err(_)) | None => break,
            }
        }
        node.shutdown().await?;
        println!("left");
        Ok(())
    })
}
