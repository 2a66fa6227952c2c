//! Training across processes: the original's `torch.distributed` data parallelism
//! (`--world_size`, `--rank`, `--dist_url`, or torchrun's `WORLD_SIZE`, `RANK`,
//! `MASTER_ADDR`, `MASTER_PORT`).
//!
//! Every process trains its local `--devices` on its share of each epoch (the loader's
//! [`Shard`](datasets::Shard)) and keeps a full copy of the model. A [`ProcessGroup`] joins
//! them: rank 0 listens at `--dist_url`, the others connect to it, and every exchange is a
//! sum that rank 0 computes in rank order and sends back to all, so every process receives the
//! same bits. What crosses the network per step:
//! - before the forward pass, the step's box and shard counts (the original's all-reduced
//!   `num_boxes`);
//! - after the backward pass, one flat vector with every gradient, the loss components and a
//!   failure count (the gradients are already divided by the number of shards of the whole
//!   step, so the sum is the original's average). Every process then clips and steps the same
//!   gradients, so all keep identical weights (checked after each epoch with [`fingerprint`]).
//!
//! Every read and write has a deadline (`--dist_timeout`) and a closed connection is noticed
//! at once: a process that dies or hangs makes the others stop with an error naming the rank
//! and the exchange, never an endless wait.
//!
//! Why not burn-collective: Burn 0.21's `burn-collective` was the first choice, but its global
//! (multi-process) all-reduce completes only once per process: the barrier that ends every
//! global operation (`SyncService::sync` in `global/node/sync.rs`) clears a copy of its list
//! of synchronised peers instead of the list itself, so the second operation never sees the
//! list equal to the set of nodes and waits forever (`docs/training.md` has the report).

pub(crate) mod gradients;
mod payload;
mod rendezvous;

pub use payload::{decode_detections, encode_detections, fingerprint};
pub use rendezvous::Rendezvous;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use burn::prelude::*;

use crate::config::RunOptions;
use crate::error::TrainError;

/// Identifies the protocol and its version in the first bytes of a connection.
const MAGIC: &[u8; 8] = b"DETRDDP1";

/// The processes of a multi-process run, as seen from one of them.
#[derive(Debug)]
pub struct ProcessGroup {
    rank: usize,
    world_size: usize,
    /// Rank 0: a connection to each other rank (index r − 1); others: the one to rank 0.
    links: Mutex<Vec<TcpStream>>,
    /// Exchanges so far (both sides check that they are at the same one).
    sequence: Mutex<u64>,
    broken: AtomicBool,
}

fn io_error(what: &str, rank: usize, peer: usize, e: &std::io::Error) -> TrainError {
    let who = if rank == 0 {
        format!("rank {peer}")
    } else {
        "rank 0".to_string()
    };
    let why = match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
            "no answer from {who} within --dist_timeout (it stopped, hangs or cannot be reached)"
        ),
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => format!("{who} closed the connection (it stopped or failed)"),
        _ => format!("{who}: {e}"),
    };
    TrainError::Distributed(format!("rank {rank} at {what}: {why}"))
}

fn read_u64(s: &mut TcpStream) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// One exchange's message: its sequence number, the values.
fn send_values(s: &mut TcpStream, sequence: u64, values: &[f32]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(16 + 4 * values.len());
    buf.extend_from_slice(&sequence.to_le_bytes());
    buf.extend_from_slice(&(values.len() as u64).to_le_bytes());
    for v in values {
        buf.extend_from_slice(&v.to_le_bytes());
    }
    s.write_all(&buf)?;
    s.flush()
}

fn recv_values(s: &mut TcpStream) -> std::io::Result<(u64, Vec<f32>)> {
    let sequence = read_u64(s)?;
    let n = read_u64(s)? as usize;
    if n > (1 << 32) {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            format!("a message of {n} values"),
        ));
    }
    let mut bytes = vec![0u8; 4 * n];
    s.read_exact(&mut bytes)?;
    let values = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((sequence, values))
}

impl ProcessGroup {
    /// Joins the processes of `--world_size` (None for a single-process run): rank 0 listens
    /// at `--dist_url` and waits for the others; they connect (retrying while rank 0 starts).
    /// Each says its rank and world size; a rank outside the world, a rank taken twice or
    /// another world size is an error in the processes concerned. Everything must happen
    /// within `--dist_timeout`.
    pub fn init(run: &RunOptions) -> Result<Option<Self>, TrainError> {
        if run.world_size <= 1 {
            return Ok(None);
        }
        let rendezvous = Rendezvous::parse(&run.dist_url, |k| std::env::var(k).ok())?;
        let (rank, world_size) = (run.rank, run.world_size);
        let timeout = Duration::from_secs_f64(run.dist_timeout);
        let address = rendezvous.resolve()?;
        let links = if rank == 0 {
            Self::accept_peers(address, world_size, timeout)?
        } else {
            vec![Self::connect(address, rank, world_size, timeout)?]
        };
        tracing::info!(
            "rank {rank}: all {world_size} processes joined at {}:{}",
            rendezvous.host,
            rendezvous.port
        );
        Ok(Some(Self {
            rank,
            world_size,
            links: Mutex::new(links),
            sequence: Mutex::new(0),
            broken: AtomicBool::new(false),
        }))
    }

    fn prepare(s: &TcpStream, timeout: Duration) -> std::io::Result<()> {
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        s.set_nodelay(true)
    }

    /// Rank 0: listens and takes one connection per other rank.
    fn accept_peers(
        address: SocketAddr,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Vec<TcpStream>, TrainError> {
        let listener = match TcpListener::bind(address) {
            Ok(l) => l,
            // A name that is not one of this machine's addresses (e.g. behind NAT): listen on
            // every interface of its family.
            Err(e) if e.kind() == ErrorKind::AddrNotAvailable => {
                let any: IpAddr = if address.is_ipv4() {
                    Ipv4Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                };
                tracing::warn!(
                    "{address} is not an address of this machine: listening on every interface"
                );
                TcpListener::bind((any, address.port())).map_err(|e| busy(address, &e))?
            }
            Err(e) => return Err(busy(address, &e)),
        };
        listener
            .set_nonblocking(true)
            .map_err(|e| TrainError::Distributed(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut peers: Vec<Option<TcpStream>> = (1..world_size).map(|_| None).collect();
        while peers.iter().any(Option::is_none) {
            match listener.accept() {
                Ok((mut s, from)) => {
                    s.set_nonblocking(false)
                        .and_then(|_| Self::prepare(&s, timeout))
                        .map_err(|e| TrainError::Distributed(e.to_string()))?;
                    let hello = (|| -> std::io::Result<(u64, u64)> {
                        let mut magic = [0u8; 8];
                        s.read_exact(&mut magic)?;
                        if &magic != MAGIC {
                            return Err(std::io::Error::new(
                                ErrorKind::InvalidData,
                                "not a detr-train process",
                            ));
                        }
                        Ok((read_u64(&mut s)?, read_u64(&mut s)?))
                    })();
                    let (r, w) = match hello {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!("ignored a connection from {from}: {e}");
                            continue;
                        }
                    };
                    let (r, w) = (r as usize, w as usize);
                    let problem = if w != world_size {
                        Some(format!(
                            "it was started with --world_size {w}, rank 0 with {world_size}"
                        ))
                    } else if r == 0 || r >= world_size {
                        Some(format!("rank {r} is not in 1..{world_size}"))
                    } else if peers[r - 1].is_some() {
                        Some(format!("rank {r} is already taken by another process"))
                    } else {
                        None
                    };
                    if let Some(p) = problem {
                        // Tell the process why, then stop: the run cannot be what was asked.
                        let _ = s.write_all(p.as_bytes());
                        return Err(TrainError::Distributed(format!(
                            "a process from {from} cannot join: {p}"
                        )));
                    }
                    peers[r - 1] = Some(s);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let missing: Vec<String> = peers
                            .iter()
                            .enumerate()
                            .filter(|(_, p)| p.is_none())
                            .map(|(i, _)| (i + 1).to_string())
                            .collect();
                        return Err(TrainError::Distributed(format!(
                            "rank 0 waited {:.0} s (--dist_timeout) at {address} for ranks {} \
                             to join",
                            timeout.as_secs_f64(),
                            missing.join(", ")
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(TrainError::Distributed(e.to_string())),
            }
        }
        let mut peers: Vec<TcpStream> = peers.into_iter().flatten().collect();
        for (i, s) in peers.iter_mut().enumerate() {
            s.write_all(b"OK")
                .and_then(|_| s.flush())
                .map_err(|e| io_error("the start", 0, i + 1, &e))?;
        }
        Ok(peers)
    }

    /// Ranks above 0: connects to rank 0 (retrying until the deadline) and joins.
    fn connect(
        address: SocketAddr,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> Result<TcpStream, TrainError> {
        let deadline = Instant::now() + timeout;
        let mut s = loop {
            match TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
                Ok(s) => break s,
                Err(e) => {
                    if Instant::now() > deadline {
                        return Err(TrainError::Distributed(format!(
                            "rank {rank} could not reach rank 0 at {address} within {:.0} s \
                             (--dist_timeout): {e}",
                            timeout.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        Self::prepare(&s, timeout).map_err(|e| TrainError::Distributed(e.to_string()))?;
        let mut hello = MAGIC.to_vec();
        hello.extend_from_slice(&(rank as u64).to_le_bytes());
        hello.extend_from_slice(&(world_size as u64).to_le_bytes());
        s.write_all(&hello)
            .and_then(|_| s.flush())
            .map_err(|e| io_error("joining", rank, 0, &e))?;
        let mut answer = Vec::new();
        let mut ok = [0u8; 2];
        match s.read_exact(&mut ok) {
            Ok(()) if &ok == b"OK" => Ok(s),
            Ok(()) => {
                answer.extend_from_slice(&ok);
                let _ = s.read_to_end(&mut answer);
                Err(TrainError::Distributed(format!(
                    "rank {rank} cannot join: {}",
                    String::from_utf8_lossy(&answer)
                )))
            }
            Err(e) => Err(io_error("joining", rank, 0, &e)),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Processes in all.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Sums `values` over the processes: rank 0 adds them in rank order and sends the sum
    /// to all.
    pub fn sum_values(&self, values: &[f32], what: &str) -> Result<Vec<f32>, TrainError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(TrainError::Distributed(format!(
                "rank {} at {what}: an earlier exchange failed",
                self.rank
            )));
        }
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let mut seq = self.sequence.lock().unwrap_or_else(|e| e.into_inner());
        *seq += 1;
        let result = self.exchange(&mut links, *seq, values, what);
        if result.is_err() {
            self.broken.store(true, Ordering::SeqCst);
            // Close the connections: the peers notice at once instead of at their deadline.
            for s in links.iter() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        result
    }

    fn exchange(
        &self,
        links: &mut [TcpStream],
        seq: u64,
        values: &[f32],
        what: &str,
    ) -> Result<Vec<f32>, TrainError> {
        let out_of_step = |peer: usize, theirs: u64, n: usize| {
            TrainError::Distributed(format!(
                "rank {} at {what} (exchange {seq} of {} values): rank {peer} sent exchange \
                 {theirs} of {n} values; the processes are out of step (were they started \
                 with the same options?)",
                self.rank,
                values.len()
            ))
        };
        if self.rank == 0 {
            let mut sum = values.to_vec();
            for (i, s) in links.iter_mut().enumerate() {
                let (theirs, v) = recv_values(s).map_err(|e| io_error(what, 0, i + 1, &e))?;
                if theirs != seq || v.len() != sum.len() {
                    return Err(out_of_step(i + 1, theirs, v.len()));
                }
                for (a, b) in sum.iter_mut().zip(&v) {
                    *a += b;
                }
            }
            for (i, s) in links.iter_mut().enumerate() {
                send_values(s, seq, &sum).map_err(|e| io_error(what, 0, i + 1, &e))?;
            }
            Ok(sum)
        } else {
            let s = &mut links[0];
            send_values(s, seq, values).map_err(|e| io_error(what, self.rank, 0, &e))?;
            let (theirs, sum) = recv_values(s).map_err(|e| io_error(what, self.rank, 0, &e))?;
            if theirs != seq || sum.len() != values.len() {
                return Err(out_of_step(0, theirs, sum.len()));
            }
            Ok(sum)
        }
    }

    /// Sums a 1-d tensor over the processes (through the host).
    pub fn sum_tensor<B: Backend>(
        &self,
        tensor: Tensor<B, 1>,
        what: &str,
    ) -> Result<Tensor<B, 1>, TrainError> {
        let device = tensor.device();
        let values = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .map_err(|e| TrainError::Distributed(format!("{what}: {e:?}")))?;
        let n = values.len();
        let sum = self.sum_values(&values, what)?;
        Ok(Tensor::from_data(TensorData::new(sum, [n]), &device))
    }

    /// Every process's `mine`, in rank order (exact: each value is added to zeros only).
    pub fn gather(&self, mine: &[f32], what: &str) -> Result<Vec<Vec<f32>>, TrainError> {
        let mut lens = vec![0.0; self.world_size];
        lens[self.rank] = mine.len() as f32;
        let lens: Vec<usize> = self
            .sum_values(&lens, what)?
            .into_iter()
            .map(|n| n as usize)
            .collect();
        let total: usize = lens.iter().sum();
        let offset: usize = lens[..self.rank].iter().sum();
        let mut buf = vec![0.0; total];
        buf[offset..offset + mine.len()].copy_from_slice(mine);
        let all = self.sum_values(&buf, what)?;
        let mut out = Vec::with_capacity(self.world_size);
        let mut at = 0;
        for n in lens {
            out.push(all[at..at + n].to_vec());
            at += n;
        }
        Ok(out)
    }

    /// Checks that every process holds the same weights (`fingerprint` of its model, see
    /// [`fingerprint`]); an error names the processes that differ from rank 0.
    pub fn check_same_weights(&self, fingerprint: u64, what: &str) -> Result<(), TrainError> {
        // Three exact 24-bit parts.
        let mine: Vec<f32> = (0..3)
            .map(|i| ((fingerprint >> (24 * i)) & 0xFF_FFFF) as f32)
            .collect();
        let all = self.gather(&mine, what)?;
        let value = |p: &[f32]| {
            p.iter()
                .enumerate()
                .fold(0u64, |acc, (i, &x)| acc | ((x as u64) << (24 * i)))
        };
        let first = value(&all[0]);
        let differ: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(_, p)| value(p) != first)
            .map(|(r, p)| format!("rank {r} ({:012x})", value(p)))
            .collect();
        if differ.is_empty() {
            Ok(())
        } else {
            Err(TrainError::Distributed(format!(
                "{what}: the weights differ between processes (rank 0 {first:012x}; {}): \
                 were they started with the same options and checkpoint?",
                differ.join(", ")
            )))
        }
    }
}

fn busy(address: SocketAddr, e: &std::io::Error) -> TrainError {
    TrainError::Distributed(format!(
        "rank 0 cannot listen on {address} (--dist_url): {e}; is another run using port {}?",
        address.port()
    ))
}
