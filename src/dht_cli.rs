//! The `--dht` options that `file-owner`, `peer share`, `peer get` and `peer join` share.

/// The BitTorrent mainline DHT (`--dht`).
#[derive(Debug, clap::Args)]
pub struct DhtArgs {
    /// Also use the BitTorrent mainline DHT: share announces its files there; get and join
    /// (with a ticket) find sources there when the ticket's directory is unreachable or knows
    /// none
    #[arg(long)]
    pub dht: bool,
    /// DHT bootstrap nodes, HOST:PORT,… [default: the public mainline bootstrap nodes]
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        requires = "dht"
    )]
    pub dht_bootstrap: Option<Vec<String>>,
    /// UDP port of this node's DHT side [default: any free port]
    #[arg(long, value_name = "PORT", requires = "dht")]
    pub dht_port: Option<u16>,
}

impl DhtArgs {
    /// The DHT, if `--dht` asks for it.
    ///
    /// # Errors
    ///
    /// Its UDP socket cannot be bound.
    pub fn start(&self) -> anyhow::Result<Option<std::sync::Arc<dyn crate::dht::Discovery>>> {
        if !self.dht {
            return Ok(None);
        }
        let options = crate::dht::DhtOptions {
            bootstrap: self.dht_bootstrap.clone(),
            port: self.dht_port,
            ..Default::default()
        };
        let dht = crate::dht::Mainline::start(&options)
            .map_err(|e| anyhow::anyhow!("cannot start the DHT side (--dht-port taken?): {e}"))?;
        Ok(Some(std::sync::Arc::new(dht)))
    }
}
