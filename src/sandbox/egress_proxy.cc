// EgressProxy over Boost.Asio: one io_context thread, C++20 coroutines,
// one coroutine per connection plus a watchdog that enforces the
// handshake, connect and idle deadlines by closing both sockets.
#include "sandbox/egress_proxy.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <mutex>
#include <thread>

#include "common/log.h"
#include "sandbox/netfilter.h"

namespace warren::sandbox {

namespace asio = boost::asio;
using asio::awaitable;
using tcp = asio::ip::tcp;
using udp = asio::ip::udp;
using Steady = std::chrono::steady_clock;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

Json EgressStats::ToJson() const {
  return Json{{"allowed", allowed},
              {"denied", denied},
              {"dns_answers", dns_answers},
              {"active", active},
              {"http_requests", http_requests}};
}

bool EgressTargetBlocked(uint32_t addr, const std::vector<Ipv4Cidr>& allow, const std::vector<uint32_t>& host_addrs) {
  for (uint32_t h : host_addrs) {
    if (h == addr) return true;  // the host itself, whatever the allow list says
  }
  for (const auto& c : allow) {
    if (c.Contains(addr)) return false;
  }
  for (const auto& c : BlockedRanges()) {
    if (c.Contains(addr)) return true;
  }
  return false;
}

std::vector<uint32_t> HostIpv4Addresses() {
  std::vector<uint32_t> out;
  ifaddrs* ifa = nullptr;
  if (getifaddrs(&ifa) != 0) return out;
  for (ifaddrs* i = ifa; i; i = i->ifa_next) {
    if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
      out.push_back(ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr));
    }
  }
  freeifaddrs(ifa);
  return out;
}

namespace {

std::string Ip(uint32_t a) { return asio::ip::address_v4(a).to_string(); }

struct Conn {
  explicit Conn(tcp::socket s) : client(std::move(s)), upstream(client.get_executor()), resolver(client.get_executor()),
                                 timer(client.get_executor()) {}
  tcp::socket client;
  tcp::socket upstream;
  tcp::resolver resolver;
  asio::steady_timer timer;
  Steady::time_point deadline;  // handshake/connect phases
  Steady::time_point last;      // splice phase: last byte either way
  bool splicing = false;
  bool done = false;
  // A later request on a plain HTTP connection was refused: the upstream's
  // side is being drained (its pending answers still reach the client),
  // then `refusal` is written and the connection closed.
  bool refusing = false;
  bool upstream_eof = false;
  std::string refusal;
  Steady::time_point drain_deadline;
  std::string sandbox_id;  // set once counted in per_sandbox
  bool counted = false;
  void CloseAll() {
    boost::system::error_code ec;
    resolver.cancel();
    client.close(ec);
    upstream.close(ec);
  }
};

enum class Proto { kTls, kHttp, kUnknown };

}  // namespace

struct EgressProxy::Impl {
  Impl(EgressProxyOptions o, EgressPolicyLookup l)
      : opts(std::move(o)), lookup(std::move(l)), acceptor(io), dns(io) {}

  EgressProxyOptions opts;
  EgressPolicyLookup lookup;
  asio::io_context io;  // before the sockets: destroyed after them
  tcp::acceptor acceptor;
  udp::socket dns;
  std::thread thread;
  uint16_t tcp_port = 0, dns_port = 0;
  std::atomic<int64_t> allowed{0}, denied{0}, dns_answers{0}, active{0}, http_requests{0};
  std::map<std::string, int> per_sandbox;  // io thread only
  // Denial log rate limit (io thread only).
  int64_t log_second = 0;
  int log_count = 0;
  int64_t suppressed = 0;

  void LogDenied(const std::string& sandbox, const std::string& host, const std::string& proto,
                 const std::string& reason) {
    ++denied;
    int64_t sec = std::chrono::duration_cast<std::chrono::seconds>(Steady::now().time_since_epoch()).count();
    if (sec != log_second) {
      if (suppressed > 0) log::Warn("sandbox.egress.denied_suppressed", {{"count", suppressed}});
      log_second = sec;
      log_count = 0;
      suppressed = 0;
    }
    if (++log_count > 50) {
      ++suppressed;
      return;
    }
    log::Info("sandbox.egress.denied", {{"sandbox", sandbox}, {"host", host}, {"proto", proto}, {"reason", reason}});
  }

  awaitable<void> Watchdog(std::shared_ptr<Conn> c) {
    while (!c->done) {
      c->timer.expires_after(std::chrono::milliseconds(200));
      (void)co_await c->timer.async_wait(kTuple);
      if (c->done) break;
      auto now = Steady::now();
      if ((!c->splicing && now > c->deadline) || (c->splicing && now - c->last > opts.idle_timeout) ||
          (c->refusing && now > c->drain_deadline)) {
        c->CloseAll();
        break;
      }
    }
  }

  static std::string HttpRefusal(int status, const std::string& reason) {
    std::string body = "warren egress: " + reason + "\n";
    std::string text = status == 403 ? "Forbidden" : status == 400 ? "Bad Request" : "Bad Gateway";
    return "HTTP/1.1 " + std::to_string(status) + " " + text +
           "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Warren-Egress: denied\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  }

  // Refusal on the client socket: an HTTP answer, a TLS alert, or a reset.
  awaitable<void> Refuse(std::shared_ptr<Conn> c, Proto proto, int status, std::string reason) {
    boost::system::error_code ec;
    if (proto == Proto::kHttp) {
      std::string resp = HttpRefusal(status, reason);
      co_await asio::async_write(c->client, asio::buffer(resp), kTuple);
      c->client.shutdown(tcp::socket::shutdown_send, ec);
    } else if (proto == Proto::kTls) {
      // Fatal alert: access_denied (49), or internal_error (80) when the
      // upstream could not be reached.
      char alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, static_cast<char>(status == 403 ? 49 : 80)};
      co_await asio::async_write(c->client, asio::buffer(alert, sizeof(alert)), kTuple);
      c->client.shutdown(tcp::socket::shutdown_send, ec);
    } else {
      c->client.set_option(asio::socket_base::linger(true, 0), ec);  // RST
    }
    c->CloseAll();
  }

  awaitable<void> Pipe(std::shared_ptr<Conn> c, tcp::socket& from, tcp::socket& to) {
    std::array<char, 16384> buf;
    while (true) {
      auto [ec, n] = co_await from.async_read_some(asio::buffer(buf), kTuple);
      if (ec) {
        boost::system::error_code ig;
        if (ec == asio::error::eof) {
          to.shutdown(tcp::socket::shutdown_send, ig);
        } else {
          c->CloseAll();
        }
        co_return;
      }
      c->last = Steady::now();
      auto [wec, m] = co_await asio::async_write(to, asio::buffer(buf.data(), n), kTuple);
      if (wec) {
        c->CloseAll();
        co_return;
      }
      c->last = Steady::now();
    }
  }

  // Client to upstream on a plain HTTP connection (or an HTTP tunnel after
  // CONNECT): every request head is parsed and checked before a byte of it
  // is forwarded; bodies are forwarded by their framing, so a head-like
  // text inside a body is never taken for a head (nor a head for a body).
  // A request is refused when its host differs from the one the upstream
  // connection was opened for (`host`, and `port` for an absolute URL),
  // when the sandbox's current policy no longer allows it, when it is a
  // CONNECT or asks for an Upgrade (what would follow could not be
  // checked), or when the framing is ambiguous or malformed. `buf` holds
  // what was read already, from the start of a head.
  awaitable<void> ForwardRequests(std::shared_ptr<Conn> c, std::string buf, uint32_t src, std::string host,
                                  uint16_t port, const char* pname) {
    HttpRequestFramer framer;
    size_t off = 0;
    std::array<char, 16384> tmp;
    while (true) {
      HttpRequestFramer::Step st = framer.Next(std::string_view(buf).substr(off));
      if (st.kind == HttpRequestFramer::Step::kNeedMore) {
        buf.erase(0, off);
        off = 0;
        auto [ec, n] = co_await c->client.async_read_some(asio::buffer(tmp), kTuple);
        if (ec) {
          boost::system::error_code ig;
          if (ec == asio::error::eof) {
            c->upstream.shutdown(tcp::socket::shutdown_send, ig);
          } else {
            c->CloseAll();
          }
          co_return;
        }
        c->last = Steady::now();
        buf.append(tmp.data(), n);
        continue;
      }
      int status = 0;
      std::string reason;
      if (st.kind == HttpRequestFramer::Step::kMalformed) {
        status = 400;
        reason = st.reason;
      } else if (st.kind == HttpRequestFramer::Step::kHead) {
        ++http_requests;
        const HttpSniff& h = st.head;
        std::optional<EgressPolicy> pol = lookup ? lookup(src) : std::nullopt;
        status = 403;
        if (h.connect) {
          reason = "CONNECT inside a connection already open to " + host;
        } else if (h.upgrade) {
          reason = "HTTP Upgrade is not carried on plain HTTP (what follows could not be checked); use TLS";
        } else if (h.host != host || (h.absolute && h.port != port)) {
          reason = "request for " + h.host + " on a connection opened for " + host + " (open a new connection)";
        } else if (!pol || !pol->hosts.Allows(h.host)) {
          reason = "host " + h.host + " is not in this sandbox's allowed hosts";
        } else {
          status = 0;
        }
      }
      if (status != 0) {
        LogDenied(c->sandbox_id, st.kind == HttpRequestFramer::Step::kHead ? st.head.host : host, pname, reason);
        boost::system::error_code ig;
        // Nothing more goes up. What the upstream still owes for earlier
        // requests reaches the client first (PipeBack), then the refusal.
        c->refusal = HttpRefusal(status, reason);
        c->refusing = true;
        c->drain_deadline = Steady::now() + opts.drain_timeout;
        c->upstream.shutdown(tcp::socket::shutdown_send, ig);
        if (c->upstream_eof) c->CloseAll();  // the client's side is shut already
        co_return;
      }
      auto [wec, m] = co_await asio::async_write(c->upstream, asio::buffer(buf.data() + off, st.len), kTuple);
      if (wec) {
        c->CloseAll();
        co_return;
      }
      off += st.len;
      c->last = Steady::now();
    }
  }

  // Upstream to client, for ForwardRequests' connections: at the
  // upstream's end of input, either passes the half-close on, or, when a
  // request was refused, writes the refusal, shuts the client's side and
  // reads what the client still sends until it closes (so the close does
  // not reset the refusal away), within the drain deadline.
  awaitable<void> PipeBack(std::shared_ptr<Conn> c) {
    std::array<char, 16384> buf;
    boost::system::error_code ig;
    while (true) {
      auto [ec, n] = co_await c->upstream.async_read_some(asio::buffer(buf), kTuple);
      if (ec) {
        if (ec != asio::error::eof) {
          c->CloseAll();
          co_return;
        }
        c->upstream_eof = true;
        if (!c->refusing) {
          c->client.shutdown(tcp::socket::shutdown_send, ig);
          co_return;
        }
        c->drain_deadline = Steady::now() + opts.drain_timeout;
        auto [wec, m] = co_await asio::async_write(c->client, asio::buffer(c->refusal), kTuple);
        if (wec) break;
        c->client.shutdown(tcp::socket::shutdown_send, ig);
        while (true) {
          auto [rec, k] = co_await c->client.async_read_some(asio::buffer(buf), kTuple);
          if (rec) break;
        }
        break;
      }
      c->last = Steady::now();
      auto [wec, m] = co_await asio::async_write(c->client, asio::buffer(buf.data(), n), kTuple);
      if (wec) {
        c->CloseAll();
        co_return;
      }
      c->last = Steady::now();
    }
    c->CloseAll();
  }

  // A CONNECT tunnel: plain HTTP inside it is framed and checked like a
  // plain connection to the CONNECT's host; anything else (TLS, another
  // protocol) is spliced.
  awaitable<void> ForwardTunnel(std::shared_ptr<Conn> c, std::string buf, uint32_t src, std::string host,
                                uint16_t port) {
    std::array<char, 4096> tmp;
    while (true) {
      std::optional<bool> http = buf.empty() ? std::nullopt : LooksLikeHttp(buf);
      if (http.has_value()) break;
      auto [ec, n] = co_await c->client.async_read_some(asio::buffer(tmp), kTuple);
      if (ec) {
        boost::system::error_code ig;
        if (ec == asio::error::eof) {
          if (!buf.empty()) co_await asio::async_write(c->upstream, asio::buffer(buf), kTuple);
          c->upstream.shutdown(tcp::socket::shutdown_send, ig);
        } else {
          c->CloseAll();
        }
        co_return;
      }
      c->last = Steady::now();
      buf.append(tmp.data(), n);
    }
    if (*LooksLikeHttp(buf)) {
      co_await ForwardRequests(c, std::move(buf), src, host, port, "connect");
      co_return;
    }
    auto [wec, m] = co_await asio::async_write(c->upstream, asio::buffer(buf), kTuple);
    if (wec) {
      c->CloseAll();
      co_return;
    }
    co_await Pipe(c, c->client, c->upstream);
  }

  // What the first bytes say: the destination, a refusal, or "read more".
  // A plain function: the coroutine below keeps few locals alive across
  // suspension points.
  struct Sniffed {
    enum Kind { kMore, kGo, kRefuse } kind = kMore;
    Proto proto = Proto::kUnknown;
    std::string host;
    uint16_t port = 0;
    bool connect = false;
    size_t head_len = 0;
    int status = 0;          // refusal: HTTP status (TLS: 403 alert, else reset)
    std::string reason;      // refusal: for the log
    std::string reply;       // refusal: for the client (HTTP body)
  };
  static Sniffed Sniff(const std::string& buf, uint16_t dialed_port) {
    Sniffed d;
    if (buf.empty()) return d;
    if (static_cast<uint8_t>(buf[0]) == 22) {
      d.proto = Proto::kTls;
      TlsSniff t = SniffClientHello(buf);
      if (t.state == SniffState::kMalformed) {
        d.kind = Sniffed::kRefuse;
        d.status = 403;
        d.reason = "malformed ClientHello: " + t.reason;
      } else if (t.state == SniffState::kDone && t.sni.empty()) {
        d.kind = Sniffed::kRefuse;
        d.status = 403;
        d.reason = "ClientHello without a server name (SNI)";
      } else if (t.state == SniffState::kDone) {
        d.kind = Sniffed::kGo;
        d.host = t.sni;
        d.port = dialed_port ? dialed_port : 443;
      } else if (buf.size() > kMaxClientHello + 2 * kMaxTlsRecord) {
        d.kind = Sniffed::kRefuse;
        d.status = 403;
        d.reason = "ClientHello too large";
      }
      return d;
    }
    auto http = LooksLikeHttp(buf);
    if (!http.has_value()) return d;
    if (!*http) {
      d.kind = Sniffed::kRefuse;
      d.reason = "not TLS or HTTP: the destination name cannot be known";
      return d;
    }
    d.proto = Proto::kHttp;
    HttpSniff h = SniffHttpHead(buf);
    if (h.state == SniffState::kMalformed) {
      d.kind = Sniffed::kRefuse;
      d.status = 400;
      d.reason = d.reply = "malformed request: " + h.reason;
    } else if (h.state == SniffState::kDone) {
      d.kind = Sniffed::kGo;
      d.host = h.host;
      d.connect = h.connect;
      d.head_len = h.head_len;
      d.port = h.port ? h.port : (dialed_port ? dialed_port : 80);
    }
    return d;
  }

  // The addresses `host` may be reached at, or a refusal reason.
  struct Targets {
    std::vector<uint32_t> ok;
    int status = 0;
    std::string reason;
  };
  Targets Check(const std::string& host, const std::vector<uint32_t>& addrs, const EgressPolicy& pol) {
    Targets t;
    if (addrs.empty()) {
      t.status = 502;
      t.reason = "could not resolve " + host;
      return t;
    }
    auto host_addrs = HostIpv4Addresses();
    std::string blocked;
    for (uint32_t a : addrs) {
      if (EgressTargetBlocked(a, pol.allow_cidrs, host_addrs)) {
        blocked += (blocked.empty() ? "" : ", ") + Ip(a);
      } else if (std::find(t.ok.begin(), t.ok.end(), a) == t.ok.end()) {
        t.ok.push_back(a);
      }
    }
    if (t.ok.empty()) {
      t.status = 403;
      t.reason = "host " + host + " resolves only to blocked addresses (" + blocked + ")";
    }
    return t;
  }

  awaitable<void> Serve(std::shared_ptr<Conn> c) {
    boost::system::error_code ec;
    auto peer = c->client.remote_endpoint(ec);
    if (ec || !peer.address().is_v4()) co_return;
    uint32_t src = peer.address().to_v4().to_uint();
    std::optional<EgressPolicy> pol;
    if (lookup) pol = lookup(src);
    if (!pol) {
      LogDenied("", "", "tcp", "source " + Ip(src) + " is not a running limited sandbox");
      co_await Refuse(c, Proto::kUnknown, 0, std::string());
      co_return;
    }
    if (per_sandbox[pol->sandbox_id] >= opts.max_connections_per_sandbox) {
      LogDenied(pol->sandbox_id, "", "tcp", "too many connections from this sandbox");
      co_await Refuse(c, Proto::kUnknown, 0, std::string());
      co_return;
    }
    // Released by the completion handler (AcceptLoop), which runs however
    // this coroutine ends. (No RAII guards in coroutine frames: GCC 12
    // destroys some of them twice on an early co_return.)
    ++per_sandbox[pol->sandbox_id];
    c->sandbox_id = pol->sandbox_id;
    c->counted = true;

    // Where the sandbox meant to go (the redirect keeps it in conntrack).
    uint16_t dialed_port = 0;
    sockaddr_in od{};
    socklen_t odlen = sizeof(od);
    if (getsockopt(c->client.native_handle(), SOL_IP, SO_ORIGINAL_DST, &od, &odlen) == 0) {
      dialed_port = ntohs(od.sin_port);
      if (dialed_port == tcp_port) dialed_port = 0;  // dialed the proxy itself
    }
    c->deadline = Steady::now() + opts.handshake_timeout;
    asio::co_spawn(io, Watchdog(c), asio::detached);

    // 1. The name.
    std::string buf;
    Sniffed d;
    while (true) {
      d = Sniff(buf, dialed_port);
      if (d.kind != Sniffed::kMore) break;
      std::array<char, 4096> tmp;
      auto [rec, n] = co_await c->client.async_read_some(asio::buffer(tmp), kTuple);
      if (rec) co_return;  // gone, or the handshake deadline closed it
      buf.append(tmp.data(), n);
    }
    const char* pname = d.proto == Proto::kTls ? "tls" : d.proto == Proto::kHttp ? (d.connect ? "connect" : "http") : "tcp";
    // 2. The allowlist.
    if (d.kind == Sniffed::kGo && !pol->hosts.Allows(d.host)) {
      d.kind = Sniffed::kRefuse;
      d.status = 403;
      d.reason = d.reply = "host " + d.host + " is not in this sandbox's allowed hosts";
    }
    if (d.kind == Sniffed::kRefuse) {
      LogDenied(c->sandbox_id, d.host, pname, d.reason);
      co_await Refuse(c, d.proto, d.status, d.reply);
      co_return;
    }

    // 3. Resolve on the host, check every address, connect to a checked one.
    c->deadline = Steady::now() + opts.connect_timeout;
    std::vector<uint32_t> addrs;
    auto over = opts.hosts_override.find(d.host);
    if (IsIpv4Literal(d.host)) {
      addrs.push_back(asio::ip::make_address_v4(d.host, ec).to_uint());
    } else if (over != opts.hosts_override.end()) {
      auto a = asio::ip::make_address_v4(over->second, ec);
      if (!ec) addrs.push_back(a.to_uint());
    } else {
      auto [rec, results] = co_await c->resolver.async_resolve(tcp::v4(), d.host, std::to_string(d.port),
                                                               tcp::resolver::numeric_service, kTuple);
      if (!rec) {
        for (const auto& r : results) addrs.push_back(r.endpoint().address().to_v4().to_uint());
      }
    }
    Targets t = Check(d.host, addrs, *pol);
    bool connected = false;
    for (size_t i = 0; i < t.ok.size() && !connected; ++i) {
      tcp::endpoint target(asio::ip::address_v4(t.ok[i]), d.port);
      c->upstream.open(tcp::v4(), ec);
      if (ec) break;
      auto [cec] = co_await c->upstream.async_connect(target, kTuple);
      if (!c->client.is_open()) co_return;  // the deadline closed everything
      auto got = c->upstream.remote_endpoint(ec);
      connected = !cec && !ec && got == target;  // the peer is the address we checked
      if (!connected) c->upstream.close(ec);
    }
    if (!connected && t.status == 0) {
      t.status = 502;
      t.reason = "could not connect to " + d.host + ":" + std::to_string(d.port);
    }
    if (!connected) {
      LogDenied(c->sandbox_id, d.host, pname, t.reason);
      co_await Refuse(c, d.proto, t.status, t.reason);
      co_return;
    }
    ++allowed;
    log::Debug("sandbox.egress.allowed", {{"sandbox", c->sandbox_id}, {"host", d.host}, {"port", d.port}, {"proto", pname}});

    // 4. Replay what was read, then splice: TLS as is; plain HTTP (and
    // HTTP inside a CONNECT tunnel) request by request, each one checked.
    using namespace asio::experimental::awaitable_operators;
    if (d.connect) {
      static const std::string kOk = "HTTP/1.1 200 Connection Established\r\n\r\n";
      auto [wec, n] = co_await asio::async_write(c->client, asio::buffer(kOk), kTuple);
      if (wec) co_return;
      c->splicing = true;
      c->last = Steady::now();
      co_await (ForwardTunnel(c, buf.substr(d.head_len), src, d.host, d.port) && PipeBack(c));
    } else if (d.proto == Proto::kHttp) {
      c->splicing = true;
      c->last = Steady::now();
      co_await (ForwardRequests(c, std::move(buf), src, d.host, d.port, pname) && PipeBack(c));
    } else {
      auto [wec, n] = co_await asio::async_write(c->upstream, asio::buffer(buf), kTuple);
      if (wec) co_return;
      c->splicing = true;
      c->last = Steady::now();
      co_await (Pipe(c, c->client, c->upstream) && Pipe(c, c->upstream, c->client));
    }
    c->CloseAll();
  }

  awaitable<void> AcceptLoop() {
    asio::steady_timer backoff(io);
    while (true) {
      auto [ec, sock] = co_await acceptor.async_accept(kTuple);
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (ec) {  // EMFILE and friends: wait a little rather than spin
        backoff.expires_after(std::chrono::milliseconds(50));
        co_await backoff.async_wait(kTuple);
        continue;
      }
      if (active.load() >= opts.max_connections) {
        boost::system::error_code ig;
        sock.set_option(asio::socket_base::linger(true, 0), ig);
        LogDenied("", "", "tcp", "proxy at its connection limit");
        continue;
      }
      auto c = std::make_shared<Conn>(std::move(sock));
      ++active;
      asio::co_spawn(io, Serve(c), [this, c](std::exception_ptr e) {
        --active;
        c->done = true;
        c->timer.cancel();
        if (c->counted) {
          auto it = per_sandbox.find(c->sandbox_id);
          if (it != per_sandbox.end() && --it->second <= 0) per_sandbox.erase(it);
          c->counted = false;
        }
        c->CloseAll();
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& x) {
            log::Error("sandbox.egress.internal", {{"error", x.what()}});
          }
        }
      });
    }
  }

  awaitable<void> DnsLoop() {
    std::array<char, 512> b;
    udp::endpoint from;
    while (true) {
      auto [ec, n] = co_await dns.async_receive_from(asio::buffer(b), from, kTuple);
      if (ec == asio::error::operation_aborted || !dns.is_open()) co_return;
      if (ec || !from.address().is_v4()) continue;
      auto pol = lookup ? lookup(from.address().to_v4().to_uint()) : std::nullopt;
      if (!pol) continue;
      auto ans = AnswerDnsQuery(std::string_view(b.data(), n), pol->gateway);
      if (!ans) continue;
      ++dns_answers;  // counted before the send: a client may read its answer before the send completes here
      (void)co_await dns.async_send_to(asio::buffer(*ans), from, kTuple);
    }
  }
};

Result<std::unique_ptr<EgressProxy>> EgressProxy::Start(EgressProxyOptions opts, EgressPolicyLookup lookup) {
  auto impl = std::make_unique<Impl>(std::move(opts), std::move(lookup));
  boost::system::error_code ec;
  tcp::endpoint ep(asio::ip::address_v4::any(), impl->opts.tcp_port);
  impl->acceptor.open(tcp::v4(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError("egress proxy: listen on port " + std::to_string(impl->opts.tcp_port) + ": " + ec.message());
  impl->tcp_port = impl->acceptor.local_endpoint().port();
  impl->dns.open(udp::v4(), ec);
  if (!ec) impl->dns.bind(udp::endpoint(asio::ip::address_v4::any(), impl->opts.dns_port), ec);
  if (ec) return Status::IOError("egress proxy: DNS port " + std::to_string(impl->opts.dns_port) + ": " + ec.message());
  impl->dns_port = impl->dns.local_endpoint().port();
  Impl* p = impl.get();
  asio::co_spawn(p->io, p->AcceptLoop(), asio::detached);
  asio::co_spawn(p->io, p->DnsLoop(), asio::detached);
  p->thread = std::thread([p] {
    try {
      p->io.run();
    } catch (const std::exception& e) {
      log::Error("sandbox.egress.stopped", {{"error", e.what()}});
    }
  });
  log::Info("sandbox.egress.started", {{"tcp_port", p->tcp_port}, {"dns_port", p->dns_port}});
  return std::unique_ptr<EgressProxy>(new EgressProxy(std::move(impl)));
}

EgressProxy::EgressProxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EgressProxy::~EgressProxy() {
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint16_t EgressProxy::tcp_port() const { return impl_->tcp_port; }
uint16_t EgressProxy::dns_port() const { return impl_->dns_port; }

EgressStats EgressProxy::stats() const {
  return EgressStats{impl_->allowed.load(), impl_->denied.load(), impl_->dns_answers.load(), impl_->active.load(),
                     impl_->http_requests.load()};
}

}  // namespace warren::sandbox
