//! Agents served inside this process (the demo, the benchmarks).

use super::{serve, Agent, AgentConfig};

/// Agents served in this process on loopback (the demo and the benchmarks): one per
/// environment, each on its own port, on a runtime of their own. Dropping this stops them.
pub struct LocalAgents {
    /// Each agent's URL, in the order asked for.
    pub urls: Vec<String>,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalAgents {
    /// Starts one agent per config on `127.0.0.1`, on free ports.
    pub fn start(configs: Vec<AgentConfig>) -> Result<LocalAgents, String> {
        let mut bound = Vec::new();
        for config in configs {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
            bound.push((listener, Agent::open(config)?));
        }
        let urls = bound
            .iter()
            .map(|(l, _)| l.local_addr().map(|a| format!("http://{a}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("flotilla-agents")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the agents' runtime: {e}"))?;
        let thread = std::thread::Builder::new()
            .name("flotilla-agents".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut served = tokio::task::JoinSet::new();
                    for (listener, agent) in bound {
                        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                            continue;
                        };
                        let mut stopped = stopped.clone();
                        served.spawn(serve(listener, agent, async move {
                            let _ = stopped.wait_for(|s| *s).await;
                        }));
                    }
                    while served.join_next().await.is_some() {}
                });
            })
            .map_err(|e| format!("cannot start the agents' thread: {e}"))?;
        Ok(LocalAgents {
            urls,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for LocalAgents {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
