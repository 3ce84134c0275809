#include "journal/decision_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"

namespace txcoord::journal {
namespace {

constexpr char kHeaderMagic[8] = {'T', 'X', 'C', 'D', 'L', 'O', 'G', '1'};
constexpr uint32_t kFormat = 1;
// A header block: magic 8, format 4, pad 4, generation 8, file size 8, then
// the CRC-32 of those 32 bytes; the rest of the 4 KiB is zero.
constexpr uint64_t kHeaderCrcOffset = 32;
constexpr uint64_t kDataStart = 2 * DecisionLog::kBlock;
constexpr uint32_t kGroupMagic = 0x31475854;  // "TXG1"
constexpr uint64_t kGroupHeaderBytes = 32;    // magic 4, crc 4, generation 8, first_seq 8, count 4, payload 4

void Put32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void Put64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint32_t Get32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
uint64_t Get64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

uint32_t Crc(const char* p, uint64_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    const uInt chunk = n > (1u << 30) ? (1u << 30) : static_cast<uInt>(n);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(p), chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

uint64_t RoundUp(uint64_t n) {
  return (n + DecisionLog::kBlock - 1) / DecisionLog::kBlock * DecisionLog::kBlock;
}

absl::Status Errno(absl::string_view what, const std::string& path) {
  return absl::UnavailableError(
      absl::StrCat("journal: ", what, " ", path, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, const char* p, uint64_t n, uint64_t offset,
                      const std::string& path) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Errno("cannot write", path);
    }
    p += w;
    n -= static_cast<uint64_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return absl::OkStatus();
}

// The header block of lap `generation` for a file of `file_bytes`.
std::string Header(uint64_t generation, uint64_t file_bytes) {
  std::string h(DecisionLog::kBlock, '\0');
  std::memcpy(h.data(), kHeaderMagic, 8);
  Put32(h.data() + 8, kFormat);
  Put64(h.data() + 16, generation);
  Put64(h.data() + 24, file_bytes);
  Put32(h.data() + kHeaderCrcOffset, Crc(h.data(), kHeaderCrcOffset));
  return h;
}

// The generation in a header block, or 0 when the block is not a header.
uint64_t ReadHeader(const char* p, uint64_t file_bytes) {
  if (std::memcmp(p, kHeaderMagic, 8) != 0 || Get32(p + 8) != kFormat) return 0;
  if (Get32(p + kHeaderCrcOffset) != Crc(p, kHeaderCrcOffset) || Get64(p + 24) != file_bytes) return 0;
  return Get64(p + 16);
}

// A group read at some offset of the file.
struct Group {
  uint64_t generation = 0;
  uint64_t first_seq = 0;
  uint64_t bytes = 0;  // on disk, padding included
  std::vector<absl::string_view> records;
};

// Parses the group at `offset`, or returns false when there is none (bad
// magic, CRC or framing).
bool ReadGroup(const std::string& file, uint64_t offset, Group* g) {
  if (offset + kGroupHeaderBytes > file.size()) return false;
  const char* p = file.data() + offset;
  if (Get32(p) != kGroupMagic) return false;
  const uint32_t count = Get32(p + 24);
  const uint64_t payload = Get32(p + 28);
  if (count == 0 || offset + kGroupHeaderBytes + payload > file.size()) return false;
  if (Get32(p + 4) != Crc(p + 8, kGroupHeaderBytes - 8 + payload)) return false;
  g->generation = Get64(p + 8);
  g->first_seq = Get64(p + 16);
  g->bytes = RoundUp(kGroupHeaderBytes + payload);
  g->records.clear();
  const char* r = p + kGroupHeaderBytes;
  const char* end = r + payload;
  for (uint32_t i = 0; i < count; ++i) {
    if (end - r < 4) return false;
    const uint32_t len = Get32(r);
    r += 4;
    if (static_cast<uint64_t>(end - r) < len) return false;
    g->records.emplace_back(r, len);
    r += len;
  }
  return r == end;
}

}  // namespace

DecisionLog::DecisionLog(std::string path, uint64_t bytes)
    : path_(std::move(path)),
      bytes_(bytes),
      max_payload_bytes_((bytes - kDataStart) / 4 - kGroupHeaderBytes) {}

DecisionLog::~DecisionLog() {
  if (fd_ >= 0) ::close(fd_);
}

absl::StatusOr<std::unique_ptr<DecisionLog>> DecisionLog::Open(
    const std::string& path, uint64_t bytes, std::vector<Entry>* lap) {
  lap->clear();
  std::unique_ptr<DecisionLog> log(new DecisionLog(path, bytes));
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return log;  // created by StartLap
    return Errno("cannot open", path);
  }
  log->fd_ = fd;
  struct stat st;
  if (::fstat(fd, &st) != 0) return Errno("cannot stat", path);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  log->file_bytes_ = size;
  if (size < kDataStart || size % kBlock != 0 || size > kMaxBytes) {
    return absl::DataLossError(absl::StrCat(
        "journal: the decision log ", path, " has ", size,
        " bytes, not a multiple of 4096 between 8 KiB and 1 GiB: it was not "
        "written by txcoord, or it was truncated"));
  }
  std::string file(size, '\0');
  for (uint64_t done = 0; done < size;) {
    ssize_t n = ::pread(fd, file.data() + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Errno("cannot read", path);
    done += static_cast<uint64_t>(n);
  }

  const uint64_t generation = std::max(ReadHeader(file.data(), size),
                                       ReadHeader(file.data() + kBlock, size));
  Group g;
  if (generation == 0) {
    // A fresh (zero-filled) file has no header and no group. Groups without
    // any readable header: both header blocks were damaged.
    for (uint64_t off = kDataStart; off < size; off += kBlock) {
      if (ReadGroup(file, off, &g)) {
        return absl::DataLossError(absl::StrCat(
            "journal: the decision log ", path,
            " holds decisions but neither of its header blocks (offsets 0 "
            "and 4096) can be read, so its current lap is unknown"));
      }
    }
    return log;
  }
  log->generation_ = generation;

  uint64_t off = kDataStart;
  uint64_t next_seq = 0;
  while (ReadGroup(file, off, &g) && g.generation == generation &&
         (lap->empty() || g.first_seq == next_seq)) {
    for (size_t i = 0; i < g.records.size(); ++i) {
      lap->push_back(Entry{g.first_seq + i, std::string(g.records[i])});
    }
    next_seq = g.first_seq + g.records.size();
    off += g.bytes;
  }
  // `off` is the lap's end: a write that never completed, or nothing. A
  // group of this lap (or of a later one, whose header was damaged) from
  // there on means something was damaged.
  for (uint64_t later = off; later < size; later += kBlock) {
    if (ReadGroup(file, later, &g) && g.generation >= generation) {
      return absl::DataLossError(absl::StrCat(
          "journal: the decision log ", path, " is damaged at offset ", off,
          ": decisions of lap ", g.generation, " (the header says ", generation,
          ") are at offset ", later, ". Do not delete it: copy the journal "
          "directory aside and keep it for inspection; every decision in it "
          "may be needed"));
    }
  }
  log->write_offset_ = off;
  return log;
}

absl::Status DecisionLog::Recreate() {
  const std::string tmp = path_ + ".new";
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot create", tmp);
  const std::string zeros(1 << 20, '\0');
  absl::Status s;
  for (uint64_t off = 0; s.ok() && off < bytes_; off += zeros.size()) {
    s = WriteAll(fd, zeros.data(), std::min<uint64_t>(zeros.size(), bytes_ - off), off, tmp);
  }
  if (s.ok() && ::fsync(fd) != 0) s = Errno("cannot sync", tmp);
  if (s.ok() && ::rename(tmp.c_str(), path_.c_str()) != 0) s = Errno("cannot rename to", path_);
  if (!s.ok()) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    s = Errno("cannot open directory", dir);
  } else {
    if (::fsync(dfd) != 0) s = Errno("cannot sync directory", dir);
    ::close(dfd);
  }
  if (!s.ok()) {
    ::close(fd);
    return s;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  file_bytes_ = bytes_;
  return absl::OkStatus();
}

absl::Status DecisionLog::StartLap() {
  if (fd_ < 0 || file_bytes_ != bytes_) {
    absl::Status s = Recreate();
    if (!s.ok()) return s;
  }
  const uint64_t next = generation_ + 1;
  const std::string header = Header(next, file_bytes_);
  absl::Status s = WriteAll(fd_, header.data(), header.size(), (next % 2) * kBlock, path_);
  if (!s.ok()) return s;
  // Durable before any group of the lap overwrites the previous lap's.
  if (::fdatasync(fd_) != 0) return Errno("cannot sync", path_);
  generation_ = next;
  write_offset_ = kDataStart;
  return absl::OkStatus();
}

bool DecisionLog::Fits(uint64_t payload_bytes) const {
  return generation_ > 0 &&
         write_offset_ + RoundUp(kGroupHeaderBytes + payload_bytes) <= file_bytes_;
}

absl::Status DecisionLog::Append(uint64_t first_seq,
                                 const std::vector<absl::string_view>& records) {
  uint64_t payload = 0;
  for (absl::string_view r : records) payload += RecordBytes(r.size());
  if (records.empty() || payload > max_payload_bytes_ || !Fits(payload)) {
    return absl::InternalError(absl::StrCat(
        "journal: a group of ", records.size(), " decisions (", payload,
        " bytes) does not fit in the decision log ", path_));
  }
  const uint64_t bytes = RoundUp(kGroupHeaderBytes + payload);
  buffer_.assign(bytes, '\0');
  char* p = buffer_.data();
  Put32(p, kGroupMagic);
  Put64(p + 8, generation_);
  Put64(p + 16, first_seq);
  Put32(p + 24, static_cast<uint32_t>(records.size()));
  Put32(p + 28, static_cast<uint32_t>(payload));
  char* r = p + kGroupHeaderBytes;
  for (absl::string_view rec : records) {
    Put32(r, static_cast<uint32_t>(rec.size()));
    std::memcpy(r + 4, rec.data(), rec.size());
    r += 4 + rec.size();
  }
  Put32(p + 4, Crc(p + 8, kGroupHeaderBytes - 8 + payload));
  absl::Status s = WriteAll(fd_, p, bytes, write_offset_, path_);
  if (!s.ok()) return s;
  // The decisions must survive power loss before phase 2. The blocks exist
  // already (zero-filled at creation): a data flush, no metadata.
  if (::fdatasync(fd_) != 0) return Errno("cannot sync", path_);
  write_offset_ += bytes;
  return absl::OkStatus();
}

}  // namespace txcoord::journal
