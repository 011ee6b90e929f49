//! Fitting a configuration to a storage's capacities ([`Config::fit`]).

use super::*;

impl Config {
    /// This configuration shrunk to what storage `S` holds, checked: the
    /// way to a configuration for a [`FixedStorage`](crate::FixedStorage)
    /// (growable storage changes nothing).
    ///
    /// `max_peers`, `max_datagram_size` and `max_pending_replies` drop to the
    /// storage's capacities. If its state buffer is smaller than the
    /// [`Limits`](crate::state::Limits) need, the limits shrink until they
    /// fit: at most 8 keys per endpoint and 16-byte key names, then values
    /// as long as the buffer allows. An error says what still cannot fit
    /// (a buffer too small for one short value per key, datagrams too
    /// small for the largest entry, ...).
    ///
    /// ```
    /// use gossip_core::{Config, FixedStorage};
    /// use gossip_core::wire::ClusterId;
    ///
    /// // 16 peers, 488 bytes of state each, 512-byte datagrams, 2 replies.
    /// type Storage = FixedStorage<16, 488, 512, 2>;
    /// let config = Config::lan(ClusterId::from_name("demo")).fit::<Storage>()?;
    /// assert_eq!((config.max_peers, config.max_datagram_size), (16, 512));
    /// assert_eq!(config.limits.max_value_len, 32);
    /// # Ok::<(), gossip_core::ConfigError>(())
    /// ```
    pub fn fit<S: Storage>(mut self) -> Result<Config, ConfigError> {
        let shrink = |value: &mut usize, cap: Option<usize>| {
            if let Some(cap) = cap {
                *value = (*value).min(cap);
            }
        };
        shrink(&mut self.max_peers, S::Peers::default().capacity_limit());
        shrink(&mut self.max_peers, S::Indices::default().capacity_limit());
        shrink(
            &mut self.max_datagram_size,
            S::Datagram::default().capacity_limit(),
        );
        shrink(
            &mut self.max_pending_replies,
            S::Replies::default().capacity_limit(),
        );
        if let Some(cap) = S::StateBuf::default().capacity_limit()
            && self.limits.max_state_bytes() > cap
        {
            let l = &mut self.limits;
            l.max_keys_per_endpoint = l.max_keys_per_endpoint.min(8);
            l.max_key_len = l.max_key_len.min(16);
            // The longest value whose entries all fit (a value's length
            // prefix grows with it, so step down from the first guess).
            let per_key = cap / l.max_keys_per_endpoint.max(1);
            l.max_value_len = l.max_value_len.min(per_key);
            while l.max_value_len > 0 && l.max_state_bytes() > cap {
                let over = l.max_state_bytes() - cap;
                let step = over.div_ceil(l.max_keys_per_endpoint.max(1)).max(1);
                l.max_value_len = l.max_value_len.saturating_sub(step);
            }
            if l.max_value_len == 0 {
                return Err(ConfigError::Storage(StorageShortfall::StateBytes));
            }
        }
        self.validate()?;
        check_storage::<S>(&self)?;
        Ok(self)
    }
}
