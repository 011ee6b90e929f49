//! A member that joins through a seed, publishes a state, prints every
//! membership event for a minute (or until Ctrl-C), then leaves gracefully.
//!
//! ```sh
//! cargo run -p gossip-tokio --example tokio_member -- 127.0.0.1:7946                  # the seed
//! cargo run -p gossip-tokio --example tokio_member -- 127.0.0.1:7947 127.0.0.1:7946   # joins it
//! ```

use std::time::Duration;

use gossip_tokio::{ClusterId, Config, NodeConfig, RecvError, spawn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
        "member {} (generation {}); Ctrl-C to leave",
        node.local_addr(),
        node.generation().0
    );
    let mut events = node.subscribe();
    let leave = tokio::time::sleep(Duration::from_secs(60));
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
