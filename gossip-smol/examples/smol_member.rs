//! A member that joins through a seed, publishes a state, prints every
//! membership event for a minute, then leaves gracefully, on smol.
//!
//! ```sh
//! cargo run -p gossip-smol --example smol_member -- 127.0.0.1:7946                  # the seed
//! cargo run -p gossip-smol --example smol_member -- 127.0.0.1:7947 127.0.0.1:7946   # joins it
//! ```

use std::time::Duration;

use gossip_smol::{ClusterId, Config, MembershipEvent, NodeConfig, RecvError, spawn};
use smol::Timer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(async {
        let mut args = std::env::args().skip(1);
        let listen = args.next().unwrap_or_else(|| "127.0.0.1:7946".into());
        let mut config = NodeConfig::new(
            listen.parse()?,
            Config::new(ClusterId::from_name("example")),
        );
        for seed in args {
            config.seeds.push(seed.parse()?);
        }
        let node = spawn(config).await?;
        node.set_state("ROLE", b"example").await?;
        println!(
            "member {} (generation {}); leaves in a minute",
            node.local_addr(),
            node.generation().0
        );
        let mut events = node.subscribe();
        let leave_at = std::time::Instant::now() + Duration::from_secs(60);
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
