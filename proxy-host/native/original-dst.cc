// originalDst(fd): the destination a TCP connection had before an iptables REDIRECT (or DNAT)
// rewrote it, as the kernel's connection tracking remembers it: getsockopt(SO_ORIGINAL_DST) on
// SOL_IP for IPv4 (and IPv4-mapped IPv6) sockets, IP6T_SO_ORIGINAL_DST on SOL_IPV6 for IPv6 ones,
// as Envoy's original_dst listener filter reads it.
//
// Returns { address, port, family: 4 | 6 }. Throws an Error whose `code` is the errno's name
// (ENOENT: the connection has no conntrack entry, so nothing was rewritten; EBADF, ENOTSOCK,
// ENOPROTOOPT...) and a TypeError for an fd that is not a non-negative integer. Never touches the fd
// otherwise: a bad fd is an error, not a crash.
//
// Node-API only (node_api.h from the local Node headers): one build serves every Node version.
#include <node_api.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <string>
#include <sys/socket.h>

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80  // linux/netfilter_ipv4.h
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80  // linux/netfilter_ipv6/ip6_tables.h
#endif

namespace {

const char* ErrnoName(int e) {
  switch (e) {
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case EPERM: return "EPERM";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return "EUNKNOWN";
  }
}

napi_value ThrowErrno(napi_env env, int e, const char* what) {
  std::string message = std::string(what) + ": " + std::strerror(e);
  napi_value code, msg, error;
  napi_create_string_utf8(env, ErrnoName(e), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message.c_str(), message.size(), &msg);
  napi_create_error(env, code, msg, &error);
  napi_value errno_value;
  napi_create_int32(env, e, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return nullptr;
}

napi_value Result(napi_env env, const char* address, int port, int family) {
  napi_value out, a, p, f;
  napi_create_object(env, &out);
  napi_create_string_utf8(env, address, NAPI_AUTO_LENGTH, &a);
  napi_create_int32(env, port, &p);
  napi_create_int32(env, family, &f);
  napi_set_named_property(env, out, "address", a);
  napi_set_named_property(env, out, "port", p);
  napi_set_named_property(env, out, "family", f);
  return out;
}

napi_value OriginalDst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  napi_valuetype type = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &type);
  double number = -1;
  if (type == napi_number) napi_get_value_double(env, argv[0], &number);
  if (type != napi_number || number < 0 || number > 2147483647 || number != static_cast<double>(static_cast<int>(number))) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "originalDst(fd): fd must be a non-negative integer");
    return nullptr;
  }
  int fd = static_cast<int>(number);

  // The socket's own family decides which table to ask.
  sockaddr_storage local;
  socklen_t local_len = sizeof(local);
  std::memset(&local, 0, sizeof(local));
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) return ThrowErrno(env, errno, "getsockname");
  bool v4 = local.ss_family == AF_INET;
  if (local.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr;
    v4 = IN6_IS_ADDR_V4MAPPED(&a);  // a dual-stack socket's IPv4 connection is tracked as IPv4
  } else if (!v4) {
    return ThrowErrno(env, EAFNOSUPPORT, "not an IPv4 or IPv6 socket");
  }

  char text[INET6_ADDRSTRLEN];
  if (v4) {
    sockaddr_in dst;
    socklen_t len = sizeof(dst);
    std::memset(&dst, 0, sizeof(dst));
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) return ThrowErrno(env, errno, "getsockopt(SOL_IP, SO_ORIGINAL_DST)");
    if (inet_ntop(AF_INET, &dst.sin_addr, text, sizeof(text)) == nullptr) return ThrowErrno(env, errno, "inet_ntop");
    return Result(env, text, ntohs(dst.sin_port), 4);
  }
  sockaddr_in6 dst;
  socklen_t len = sizeof(dst);
  std::memset(&dst, 0, sizeof(dst));
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len) != 0) return ThrowErrno(env, errno, "getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)");
  if (inet_ntop(AF_INET6, &dst.sin6_addr, text, sizeof(text)) == nullptr) return ThrowErrno(env, errno, "inet_ntop");
  return Result(env, text, ntohs(dst.sin6_port), 6);
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, OriginalDst, nullptr, &fn);
  napi_set_named_property(env, exports, "originalDst", fn);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
