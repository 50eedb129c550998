//! The event loop: sole owner of the `Swarm`.
//!
//! It turns commands into swarm calls, remembers which reply channel waits for
//! which query, request or dial, and turns swarm events into replies, domain
//! events and inbound job requests. Everything it does is bookkeeping; nothing
//! here blocks or computes.

use super::behaviour::{Behaviour, BehaviourEvent};
use super::protocol::{DeclineReason, FailureReason, JobRequest, JobResponse, KAD_PROTOCOL};
use super::{Command, InboundJob, NetError, NetEvent, NetInfo};
use futures::StreamExt;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, identify, ping};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

type Reply<T> = oneshot::Sender<T>;
/// Providers found so far, how many are wanted, and who waits for them.
type ProviderQuery = (HashSet<PeerId>, usize, Reply<HashSet<PeerId>>);

/// The loop's state.
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: broadcast::Sender<NetEvent>,
    inbound: Option<mpsc::Sender<InboundJob>>,
    pending_listen:
        HashMap<libp2p::core::transport::ListenerId, Reply<Result<Multiaddr, NetError>>>,
    pending_dial: HashMap<PeerId, Vec<Reply<Result<PeerId, NetError>>>>,
    pending_bootstrap: HashMap<QueryId, Reply<Result<(), NetError>>>,
    pending_provide: HashMap<QueryId, Reply<Result<(), NetError>>>,
    pending_providers: HashMap<QueryId, ProviderQuery>,
    pending_requests: HashMap<OutboundRequestId, (PeerId, Reply<Result<JobResponse, NetError>>)>,
    rtts: HashMap<PeerId, Duration>,
}

impl EventLoop {
    /// Wraps a built swarm.
    pub fn new(
        swarm: Swarm<Behaviour>,
        commands: mpsc::Receiver<Command>,
        events: broadcast::Sender<NetEvent>,
        inbound: Option<mpsc::Sender<InboundJob>>,
    ) -> Self {
        Self {
            swarm,
            commands,
            events,
            inbound,
            pending_listen: HashMap::new(),
            pending_dial: HashMap::new(),
            pending_bootstrap: HashMap::new(),
            pending_provide: HashMap::new(),
            pending_providers: HashMap::new(),
            pending_requests: HashMap::new(),
            rtts: HashMap::new(),
        }
    }

    /// Runs until a `Shutdown` command or until every client is dropped.
    pub async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn on_command(&mut self, command: Command) {
        let swarm = &mut self.swarm;
        match command {
            Command::Listen { addr, reply } => match swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    self.pending_listen.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(NetError::Listen {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    }));
                }
            },
            Command::Dial { addr, reply } => {
                let Some(peer) = peer_of(&addr) else {
                    let _ = reply.send(Err(NetError::Dial {
                        addr: addr.to_string(),
                        reason: "the address must end in /p2p/<peer id>".into(),
                    }));
                    return;
                };
                swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                if swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                match swarm.dial(addr.clone()) {
                    Ok(()) => self.pending_dial.entry(peer).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            addr: addr.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Connect { peer, reply } => {
                if swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(peer));
                    return;
                }
                // Already dialing is fine: the reply waits for that dial's outcome.
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                match swarm.dial(opts) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => {
                        self.pending_dial.entry(peer).or_default().push(reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Dial {
                            addr: peer.to_string(),
                            reason: e.to_string(),
                        }));
                    }
                }
            }
            Command::Bootstrap { reply } => match swarm.behaviour_mut().kad.bootstrap() {
                Ok(id) => {
                    self.pending_bootstrap.insert(id, reply);
                }
                Err(_) => {
                    let _ = reply.send(Err(NetError::NoKnownPeers));
                }
            },
            Command::StartProviding { key, reply } => {
                match swarm.behaviour_mut().kad.start_providing(key) {
                    Ok(id) => {
                        self.pending_provide.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Store(e.to_string())));
                    }
                }
            }
            Command::GetProviders { key, want, reply } => {
                let id = swarm.behaviour_mut().kad.get_providers(key);
                self.pending_providers
                    .insert(id, (HashSet::new(), want.max(1), reply));
            }
            Command::Request {
                peer,
                request,
                reply,
            } => {
                let id = swarm.behaviour_mut().job.send_request(&peer, request);
                self.pending_requests.insert(id, (peer, reply));
            }
            Command::Respond { channel, response } => {
                // Fails only when the requester is gone; nothing to tell anyone.
                let _ = swarm.behaviour_mut().job.send_response(channel, response);
            }
            Command::Rtt { peer, reply } => {
                let _ = reply.send(self.rtts.get(&peer).copied());
            }
            Command::Info { reply } => {
                let mut routing_table_size = 0;
                for bucket in swarm.behaviour_mut().kad.kbuckets() {
                    routing_table_size += bucket.num_entries();
                }
                let _ = reply.send(NetInfo {
                    peer_id: *swarm.local_peer_id(),
                    listen_addrs: swarm.listeners().cloned().collect(),
                    connected: swarm.connected_peers().copied().collect(),
                    routing_table_size,
                    external_addrs: swarm.external_addresses().cloned().collect(),
                    dht_server: swarm.behaviour_mut().kad.mode() == libp2p::kad::Mode::Server,
                });
            }
            Command::Shutdown => {}
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                if let Some(reply) = self.pending_listen.remove(&listener_id) {
                    let _ = reply.send(Ok(address.clone()));
                }
                let _ = self.events.send(NetEvent::Listening(address));
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(reply) = self.pending_listen.remove(&listener_id) {
                    let reason = reason
                        .err()
                        .map_or_else(|| "closed".to_owned(), |e| e.to_string());
                    let _ = reply.send(Err(NetError::Listen {
                        addr: String::new(),
                        reason,
                    }));
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } => {
                for reply in self.pending_dial.remove(&peer_id).unwrap_or_default() {
                    let _ = reply.send(Ok(peer_id));
                }
                if num_established.get() == 1 {
                    let _ = self.events.send(NetEvent::PeerConnected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.rtts.remove(&peer_id);
                let _ = self.events.send(NetEvent::PeerDisconnected(peer_id));
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if !self.swarm.is_connected(&peer) => {
                for reply in self.pending_dial.remove(&peer).unwrap_or_default() {
                    let _ = reply.send(Err(NetError::Dial {
                        addr: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            // Only peers that serve plasm's DHT belong in the routing table.
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if info.protocols.contains(&KAD_PROTOCOL) =>
            {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.rtts.insert(peer, rtt);
            }
            BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            }) => {
                self.on_query(id, result, step.last);
            }
            BehaviourEvent::Job(event) => self.on_job_event(event),
            _ => {}
        }
    }

    fn on_query(&mut self, id: QueryId, result: QueryResult, last: bool) {
        match result {
            QueryResult::Bootstrap(r) if last || r.is_err() => {
                if let Some(reply) = self.pending_bootstrap.remove(&id) {
                    let _ = reply.send(r.map(|_| ()).map_err(|_| NetError::NoKnownPeers));
                }
            }
            QueryResult::StartProviding(r) => {
                if let Some(reply) = self.pending_provide.remove(&id) {
                    let _ = reply.send(r.map(|_| ()).map_err(|e| NetError::Store(e.to_string())));
                }
            }
            QueryResult::GetProviders(r) => {
                if let Some((found, want, _)) = self.pending_providers.get_mut(&id)
                    && let Ok(GetProvidersOk::FoundProviders { providers, .. }) = r
                {
                    // Provider addresses live only as long as the query: dial now, while
                    // the swarm can still resolve them, so the requester can reach them later.
                    let me = *self.swarm.local_peer_id();
                    for peer in providers {
                        if found.len() >= *want || peer == me {
                            continue;
                        }
                        found.insert(peer);
                        if !self.swarm.is_connected(&peer) {
                            let opts = DialOpts::peer_id(peer)
                                .condition(PeerCondition::DisconnectedAndNotDialing)
                                .build();
                            let _ = self.swarm.dial(opts);
                        }
                    }
                }
                // Once enough providers are known, answering (and ending the query) saves the
                // round trips to the rest of the closest peers.
                let done = last
                    || self
                        .pending_providers
                        .get(&id)
                        .is_some_and(|(f, want, _)| f.len() >= *want);
                if done && let Some((found, _, reply)) = self.pending_providers.remove(&id) {
                    let _ = reply.send(found);
                    if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        query.finish();
                    }
                }
            }
            _ => {}
        }
    }

    fn on_job_event(&mut self, event: request_response::Event<JobRequest, JobResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let busy = |request: &JobRequest| match request {
                        JobRequest::Offer { .. } => JobResponse::Decline {
                            reason: DeclineReason::Busy,
                            message: "the executor's request queue is full".into(),
                        },
                        JobRequest::Bundle { .. } => JobResponse::Failure {
                            reason: FailureReason::Busy,
                            message: "the executor's request queue is full".into(),
                        },
                    };
                    let Some(inbound) = &self.inbound else {
                        let _ = self.swarm.behaviour_mut().job.send_response(
                            channel,
                            JobResponse::Decline {
                                reason: DeclineReason::Policy,
                                message: "this node does not execute jobs".into(),
                            },
                        );
                        return;
                    };
                    if let Err(e) = inbound.try_send(InboundJob {
                        peer,
                        request,
                        channel,
                    }) {
                        let job = match e {
                            mpsc::error::TrySendError::Full(j)
                            | mpsc::error::TrySendError::Closed(j) => j,
                        };
                        let response = busy(&job.request);
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .job
                            .send_response(job.channel, response);
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // Oversized or undecodable requests end here: the stream is dropped.
                tracing::debug!(%peer, %error, "inbound job request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

/// The peer id at the end of a multiaddr.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}
