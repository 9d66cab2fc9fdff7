//! A `postgres::Config` read into the `tokio_postgres::Config` the opener keeps (through its
//! getters: the blocking crate gives no access to the configuration it wraps).

use tokio_postgres::config::Host;

/// Every setting of `config` but its notice callback, which has no getter.
pub(crate) fn to_tokio(config: &postgres::Config) -> tokio_postgres::Config {
    let mut to = tokio_postgres::Config::new();
    sanspool_pgconn::copy_settings!(config, &mut to);
    for host in config.get_hosts() {
        match host {
            Host::Tcp(name) => to.host(name),
            Host::Unix(path) => to.host_path(path),
        };
    }
    for addr in config.get_hostaddrs() {
        to.hostaddr(*addr);
    }
    for port in config.get_ports() {
        to.port(*port);
    }
    to.ssl_mode(config.get_ssl_mode())
        .ssl_negotiation(config.get_ssl_negotiation());
    to
}

#[cfg(test)]
mod tests {
    /// Pins that no setting is lost on the way: should tokio-postgres grow one that the copy
    /// does not carry, the two differ.
    #[test]
    fn every_setting_is_carried() {
        let dsn = "user=u password=p dbname=d options='-c x=y' application_name=a \
                   sslmode=require sslnegotiation=direct host=h1,/run/pg hostaddr=10.0.0.1,10.0.0.2 \
                   port=1,2 connect_timeout=3 tcp_user_timeout=4 keepalives=0 keepalives_idle=5 \
                   keepalives_interval=6 keepalives_retries=7 target_session_attrs=read-write \
                   channel_binding=require load_balance_hosts=random";
        let blocking: postgres::Config = dsn.parse().unwrap();
        let tokio: tokio_postgres::Config = dsn.parse().unwrap();
        assert_eq!(super::to_tokio(&blocking), tokio);
        assert_ne!(tokio, tokio_postgres::Config::new());
    }
}
