// A connected pair of Unix stream sockets for tests, closed on destruction.
#ifndef TXCOORD_TESTS_TESTING_SOCKET_PAIR_H_
#define TXCOORD_TESTS_TESTING_SOCKET_PAIR_H_

#include <sys/socket.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace txcoord::testing {

struct SocketPair {
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
  ~SocketPair() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
  SocketPair(const SocketPair&) = delete;
  SocketPair& operator=(const SocketPair&) = delete;
  int fd[2] = {-1, -1};
};

}  // namespace txcoord::testing

#endif  // TXCOORD_TESTS_TESTING_SOCKET_PAIR_H_
